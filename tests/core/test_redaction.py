"""The one set of redaction rules (spanvisor.redaction): each secret shape a
person could be shown is masked wherever it stands, masking twice changes
nothing, and ordinary commands are left as they are."""

from __future__ import annotations

import string
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spanvisor.redaction import MASK, _every_rule, clip_middle, is_secret_key, redact, redact_json

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


def _body(alphabet: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    """A random secret body with at least one digit and one letter (as real keys have)."""
    return (
        st.text(alphabet, min_size=lo, max_size=hi)
        .map(lambda s: "7" + s + "Q")
        .filter(lambda s: len(set(s)) > 4)  # a run of one character is not a key anyone holds
    )


# Each shape: (how the secret is written around its random body, the body).
SHAPES: dict[str, tuple[str, st.SearchStrategy[str]]] = {
    "github_classic": ("ghp_{}", _body(ALNUM, 34, 40)),
    "github_oauth": ("gho_{}", _body(ALNUM, 34, 40)),
    "github_user": ("ghu_{}", _body(ALNUM, 34, 40)),
    "github_server": ("ghs_{}", _body(ALNUM, 34, 40)),
    "github_refresh": ("ghr_{}", _body(ALNUM, 34, 40)),
    "github_pat": ("github_pat_{}", _body(ALNUM + "_", 60, 80)),
    "aws_key_id": ("AKIA{}", _body(UPPER_DIGITS, 14, 14)),
    "aws_session_key_id": ("ASIA{}", _body(UPPER_DIGITS, 14, 14)),
    "aws_secret_env": ("AWS_SECRET_ACCESS_KEY={}", _body(ALNUM + "/+", 38, 38)),
    "openai": ("sk-{}", _body(ALNUM, 46, 50)),
    "openai_project": ("sk-proj-{}", _body(ALNUM + "_-", 60, 120)),
    "anthropic": ("sk-ant-api03-{}", _body(ALNUM + "_-", 80, 95)),
    "token_flag_eq": ("--token={}", _body(ALNUM + "._-", 8, 40)),
    "token_flag_space": ("--token {}", _body(ALNUM + "._-", 8, 40)),
    "password_flag": ("--password={}", _body(ALNUM + "!#._-", 8, 30)),
    "api_key_flag": ("--api-key {}", _body(ALNUM, 16, 40)),
    "mysql_p": ("mysql -u root -p{} appdb", _body(ALNUM + "!#._", 6, 20)),
    "docker_login_p": ("docker login -u ci -p {} registry.example.com", _body(ALNUM + "!#._", 8, 30)),
    "podman_login_p_eq": ("podman login --username ci -p={} quay.io", _body(ALNUM + "!#._", 8, 30)),
    "redis_cli_a": ("redis-cli -h cache -a {} ping", _body(ALNUM + "!#._", 8, 30)),
    "htpasswd_b": ("htpasswd -b .htpasswd admin {}", _body(ALNUM + "!#._", 8, 30)),
    "htpasswd_cb": ("htpasswd -c -b /etc/nginx/.htpasswd admin {}", _body(ALNUM + "!#._", 8, 30)),
    "htpasswd_nb": ("htpasswd -nbB admin {}", _body(ALNUM + "!#._", 8, 30)),
    "echo_password_stdin": ("echo {} | docker login -u ci --password-stdin ghcr.io", _body(ALNUM + "!#._", 8, 30)),
    "echo_n_quoted_password_stdin": ("echo -n '{}' | podman login --password-stdin", _body(ALNUM + "!#._", 8, 30)),
    "url_credentials": ("https://admin:{}@db.example.com/x", _body(ALNUM + "._~!$", 6, 24)),
    "authorization_bearer": ("Authorization: Bearer {}", _body(ALNUM + "._-", 16, 60)),
    "authorization_basic": ("Authorization: Basic {}", _body(ALNUM + "+/=", 12, 40)),
    "authorization_token": ("Authorization: token {}", _body(ALNUM, 16, 40)),
    "env_token": ("DEPLOY_TOKEN={}", _body(ALNUM + "._-", 8, 40)),
    "env_key": ("STRIPE_SIGNING_KEY={}", _body(ALNUM, 16, 40)),
    "env_secret": ("export CLIENT_SECRET={}", _body(ALNUM, 16, 40)),
    "env_password": ("DB_PASSWORD={}", _body(ALNUM + "!#.", 8, 24)),
    "env_passwd": ("SMTP_PASSWD={}", _body(ALNUM, 8, 24)),
    "json_password": ('"password": "{}"', _body(ALNUM + " !#.", 8, 24)),
    "slack_bot": ("xoxb-{}", _body(ALNUM + "-", 30, 50)),
    "grafana": ("glsa_{}", _body(ALNUM + "_", 32, 40)),
}

# Words and separators of ordinary text (no secret shapes among them).
_WORDS = st.sampled_from(
    [
        "ls",
        "-la",
        "git",
        "status",
        "deploy",
        "the",
        "build",
        "&&",
        "|",
        ";",
        "echo",
        "done",
        "src/app.py",
        "'quoted text'",
        '"double"',
        "(x)",
        "{a: 1}",
        "$HOME",
        "=",
        ":",
        "#",
        "\n",
        "tokens",
        "key",
        "risk",
    ]
)
_TEXT = st.lists(_WORDS | st.text(string.ascii_lowercase + " .,/", max_size=12), max_size=12).map(" ".join)
# Neighbours of a secret that other rules key on.
_NEIGHBOURS = st.sampled_from(
    [
        "token",
        "password:",
        "Bearer",
        "--token",
        "Authorization:",
        "https://u:",
        "mysql",
        "-p",
        "curl -u",
        "sk-",
        "@",
        '\\"',
    ]
)
_AROUND = st.lists(_WORDS | _NEIGHBOURS | st.text(string.ascii_lowercase + " .,/", max_size=12), max_size=12).map(
    " ".join
)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=60)
@given(data=st.data())
def test_a_secret_of_each_shape_never_survives_whatever_text_surrounds_it(shape: str, data: st.DataObject) -> None:
    template, body_of = SHAPES[shape]
    body = data.draw(body_of, label="secret")
    before, after = data.draw(_AROUND, label="before"), data.draw(_AROUND, label="after")
    assume(body not in before and body not in after)
    text = f"{before} {template.format(body)} {after}"
    shown = redact(text)
    assert body not in shown, (shape, shown)
    assert MASK in shown


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_secret_inside_json_text_and_inside_an_action_is_masked(shape: str) -> None:
    """The hook's details are JSON text (quotes escaped inside strings), an
    action is a JSON value: the secret goes in both."""
    import json

    template, _ = SHAPES[shape]
    body = "7Hq2Xv9LmN4pR8sT1wY6zA3bC5dE0fG7hJ"
    if template.startswith(("AKIA", "ASIA")):
        body = "7HQ2XV9LMN4PR8QZ"
    secret = template.format(body)
    args = {"command": f"run {secret} now", "description": "x"}
    assert body not in redact(json.dumps(args))
    assert body not in json.dumps(redact_json({"tool": "Bash", "arguments": args}))


@settings(max_examples=300)
@given(text=st.text(max_size=300) | _AROUND)
def test_redact_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_masked_secret_stays_the_same_when_masked_again(shape: str) -> None:
    template, _ = SHAPES[shape]
    once = redact(f"x {template.format('7Hq2Xv9LmN4pR8sT1wY6zA3bC5dE0fGk')} y")
    assert redact(once) == once


COMMON = [
    "ls -la",
    "git status",
    "git log --oneline -20",
    "git push -u origin main",
    "pytest -q tests/core -k token_count",
    "python -m pip install -e .",
    "npm install --save-dev typescript",
    "docker run -p 8080:80 -u 1000:1000 nginx",
    "mkdir -p src/app && cp -pr a b",
    "ssh -p 2222 deploy@example.com",
    "tar -xzf release.tgz -C /tmp",
    "export PATH=$PATH:/usr/local/bin",
    "echo $GITHUB_TOKEN | gh auth login --with-token",
    'curl -H "Authorization: Bearer $API_TOKEN" https://api.example.com/v1/items?page=2',
    "grep -rn password_hash src/ | head",
    "cat ~/.ssh/config",
    "kubectl get secrets -n prod",
    "password = getpass.getpass()",
    'token = os.environ["GITHUB_TOKEN"]',
    "max_tokens=4096 temperature=0.2",
    "psql postgresql://app@db:5432/app -c 'select 1'",
    "http://localhost:8080/health",
    "rm -rf build/ dist/ *.egg-info",
    "Edit src/spanvisor/redaction.py: risk-assessment-framework-2024, sk-learn",
    "sed -i 's/foo/bar/g' README.md",
    "docker login registry.example.com",
    "docker run -p 5432:5432 -e POSTGRES_DB=app postgres",
    "redis-cli -h cache -p 6380 ping",
    "htpasswd -c .htpasswd admin",
    "echo $REGISTRY_PASSWORD | docker login -u ci --password-stdin ghcr.io",
    "cat token.txt | docker login --password-stdin",
]


@pytest.mark.parametrize("command", COMMON)
def test_ordinary_commands_are_shown_as_they_are(command: str) -> None:
    assert redact(command) == command


@settings(max_examples=200)
@given(text=_TEXT)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_the_issue_s_command_is_masked_everywhere_it_holds_a_secret() -> None:
    cmd = (
        "export ANTHROPIC_API_KEY=sk-ant-api03-Xy7Qp2Lm9Vb4Nc8Rt1Zw GITHUB_TOKEN=ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8 "
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE && ./deploy.sh --token=tok-123456 "
        "&& curl -H 'Authorization: Bearer sk-live-abcdef123456' https://admin:hunter2@db.example.com/"
    )
    shown = redact(cmd)
    for secret in ("Xy7Qp2", "a1B2c3", "IOSFODNN7", "tok-123456", "sk-live-abcdef", "hunter2"):
        assert secret not in shown, shown
    # What runs is still readable around the masks.
    assert "./deploy.sh --token=****" in shown and "https://admin:****@db.example.com/" in shown
    assert "Authorization: Bearer ****" in shown


def test_variables_and_calls_are_not_secrets() -> None:
    assert redact("Authorization: Bearer $TOKEN") == "Authorization: Bearer $TOKEN"
    assert redact("--token $TOKEN --password ${PW}") == "--token $TOKEN --password ${PW}"
    assert redact("api_key = load_key()") == "api_key = load_key()"


def test_json_keys_that_name_secrets() -> None:
    assert is_secret_key("password") and is_secret_key("apiKey") and is_secret_key("GITHUB_TOKEN")
    assert is_secret_key("Authorization") and is_secret_key("client_secret") and is_secret_key("db_pass")
    for plain in ("bypass", "max_tokens", "keyword", "primary_key", "command", "path", "passage"):
        assert not is_secret_key(plain), plain
    shown = redact_json(
        {"headers": {"Authorization": "Basic abc"}, "n": 3, "items": ["ghp_" + "a1" * 10], "apiKey": ""}
    )
    assert shown == {"headers": {"Authorization": MASK}, "n": 3, "items": [f"ghp_{MASK}"], "apiKey": ""}


def test_a_megabyte_is_redacted_in_linear_time() -> None:
    """The rules start at literals or bounded runs: no input makes them
    backtrack quadratically (a 1 MiB action goes through them): 200 kB of
    the worst repetitions for each rule is redacted in well under a second
    here, where quadratic rules took minutes."""
    n = 200_000
    for unit in (
        "A",
        "-",
        "://a:",
        "token=",
        "token: ",
        'password="',
        "mysql ",
        "curl ",
        "authorization: ",
        "Bearer ",
        "docker login ",
        "redis-cli ",
        "htpasswd -b ",
        "htpasswd -n ",
        "echo ",
        "| --password-stdin ",
    ):
        text = unit * (n // len(unit))
        t0 = time.perf_counter()
        redact(text)
        assert time.perf_counter() - t0 < 4.0, unit


@settings(max_examples=200)
@given(text=st.text(min_size=0, max_size=2000), limit=st.integers(min_value=40, max_value=600))
def test_clip_middle_keeps_both_ends_within_the_limit(text: str, limit: int) -> None:
    shown = clip_middle(text, limit)
    assert len(shown) <= limit
    if len(text) <= limit:
        assert shown == text
    else:
        head, _, rest = shown.partition(" … ")
        left_out, _, tail = rest.partition(" characters … ")
        assert text.startswith(head) and text.endswith(tail)
        assert int(left_out) == len(text) - len(head) - len(tail)


@settings(max_examples=400)
@given(text=st.text(string.printable, max_size=200) | _AROUND, shape=st.sampled_from(sorted(SHAPES)))
def test_the_quick_check_never_skips_text_a_rule_would_mask(text: str, shape: str) -> None:
    """Text with none of the triggers is returned untouched without running
    the rules: that must never skip a secret the rules would mask."""
    template = SHAPES[shape][0]
    for candidate in (text, f"{text} {template.format('7Hq2Xv9LmN4pR8sT1wY6zA3bC5dE0fGk')} {text}"):
        assert redact(candidate) == _every_rule(candidate)
        swapped = candidate.swapcase()
        assert redact(swapped) == _every_rule(swapped)
