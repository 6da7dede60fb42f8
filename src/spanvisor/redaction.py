"""What a person is shown of agent text: secrets masked, long text clipped
in the middle so both ends stay visible.

One set of rules for every text a person sees (an approval's question,
details and action, a task's steps, log lines, spanvisor's own logs):

* provider keys: GitHub (``ghp_`` ``gho_`` ``ghu_`` ``ghs_`` ``ghr_``
  ``github_pat_``), GitLab ``glpat-``, AWS access key ids (``AKIA``/``ASIA``),
  OpenAI and Anthropic (``sk-``, ``sk-proj-``, ``sk-ant-``), Stripe
  (``sk_live_``), Google ``AIza``, npm ``npm_``, Hugging Face ``hf_``, Slack
  (``xox?-``, ``xapp-``, webhook URLs), Grafana ``glsa_``, JSON Web Tokens
  and PEM private key blocks;
* credentials by where they stand: ``Authorization:`` headers (any scheme),
  ``Bearer …``, ``user:password@`` in URLs, ``--token=…`` / ``--password …``
  / ``--api-key …`` and the like, ``-p<password>`` after ``mysql`` (and
  ``sshpass -p``), ``docker login -p`` (podman, nerdctl, buildah, skopeo),
  ``redis-cli -a``, ``htpasswd -b``'s password operand, what is echoed into
  ``--password-stdin``, ``curl -u user:password``, and assignments whose name
  ends in token, secret, password, passwd, api key, access key,
  credentials (``GITHUB_TOKEN=…``, ``"password": "…"``, ``?access_token=…``)
  or, in capitals, ``_KEY`` (``AWS_SECRET_ACCESS_KEY=…``).

A value that is a shell variable (``$TOKEN``) or a call (``get_password()``)
is not a secret and stays. Masks keep the shape's prefix (``ghp_****``), so
a person still sees what kind of secret was there; ``redact`` is idempotent.

Only ``re`` at run time: the gate imports it on its fast path, and a rule is
compiled when some text first holds one of its literals. Every
pattern starts at a literal or a bounded run, so a megabyte of text costs
one pass per rule.
"""

from __future__ import annotations

import re

# Only ``re`` at run time (the gate's fast path); the rest for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MASK = "****"

# A secret's value: quoted ('…', "…", or \"…\" inside JSON text), else a run
# of characters no shell or JSON syntax ends; a variable or a call is not one.
# Neither is a name itself ("password: token: x" masks x, not "token:").
_QUOTED = r"""(?P<q>\\?["'])(?P<qv>[^"'\\\n]{1,512})(?P=q)(?![:=])"""
_NOT_A_NAME = r"""(?!(?:\\?["'])?[:=])"""
_BARE = rf"""(?![$%-])(?P<v>(?>[^\s"'\\<>|&;`,(){{}}\[\]]{{1,1024}}))(?<![:=])(?![(\[]){_NOT_A_NAME}"""
_VALUE = rf"(?:{_QUOTED}|{_BARE})"
# A header's credentials hold no ":" (what would is the next header's name).
_HEADER_VALUE = rf"""(?:{_QUOTED}|(?![$%-])(?P<v>(?>[^\s"'\\<>|&;`,(){{}}\[\]:]{{1,1024}}))(?![(\[]){_NOT_A_NAME})"""
# htpasswd's flags (letters after one dash), one of them holding -b (the
# password on the command line), then an operand that is not a flag.
_FLAGS = r"(?:\s+-[A-Za-z]+)*?"
_FLAGS_SEEN = r"(?:\s+-[A-Za-z]+)+"
_HTPASSWD_B = rf"(?={_FLAGS}\s+-[A-Za-z]*b)"
_OPERAND = r"\s+(?!-)[^\s|;&]+"
# How a name ends when what follows it is a secret.
_SECRET_NAME = (
    r"(?:token|secret|passw(?:or)?d|[_-]pwd|[_-]pass|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|secret[_-]?key|auth[_-]?key|client[_-]?secret|credentials?)"
)
_SECRET_KEY = re.compile(rf"(?i)(?:^|[_.-]|(?-i:(?<=[a-z])(?=[A-Z])))(?:{_SECRET_NAME}|authorization|pwd|pass)$")


def _masked(m: re.Match[str]) -> str:
    """The match with its value group masked (quotes kept, and the
    punctuation that ends a sentence: "…--token=x?" stays a question)."""
    pre = m.group("pre") or ""
    q = m.group("q")
    if q:
        return f"{pre}{q}{MASK}{q}"
    v = m.group("v") or ""
    return f"{pre}{MASK}{v[len(v.rstrip('?.!,')) :]}"


class _Rule:
    """A pattern compiled on first use (the gate runs few of them), run on
    ASCII text only when the text holds one of its ``triggers``: lowercase
    literals that every match contains."""

    __slots__ = ("_pattern", "repl", "source", "triggers")

    def __init__(self, triggers: tuple[str, ...], source: str, repl: str | Callable[[re.Match[str]], str]) -> None:
        self.triggers, self.source, self.repl = triggers, source, repl
        self._pattern: re.Pattern[str] | None = None

    def sub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            pattern = self._pattern = re.compile(self.source)
        return pattern.sub(self.repl, text)


# The keywords a name that holds a secret ends in (lowercased: "pass" covers
# passw(or)d, "key" every *_key).
_NAMED = ("token", "secret", "pass", "pwd", "key", "credential")

_RULES: tuple[_Rule, ...] = (
    # PEM private keys, body and all (up to the END line, or the end of the text).
    _Rule(
        ("private key",),
        r"(-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)[\s\S]*?(-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|\Z)",
        rf"\1{MASK}\2",
    ),
    # Shapes of provider keys, whatever stands around them.
    _Rule(("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"\b(gh[pousr]_)[A-Za-z0-9]{16,}", rf"\1{MASK}"),
    _Rule(("github_pat_",), r"\bgithub_pat_[A-Za-z0-9_]{16,}", f"github_pat_{MASK}"),
    _Rule(("glpat-",), r"\bglpat-[A-Za-z0-9_-]{16,}", f"glpat-{MASK}"),
    _Rule(("akia", "asia", "abia", "acca"), r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{12,}\b", rf"\1{MASK}"),
    _Rule(
        ("sk-",),
        r"(?<![A-Za-z0-9_-])(sk-(?:ant-(?:[a-z]{2,8}\d\d-)?|proj-|svcacct-|admin-)?)"
        r"(?=[A-Za-z_-]{0,64}[0-9])[A-Za-z0-9_-]{16,}",
        rf"\1{MASK}",
    ),
    _Rule(("k_live_", "k_test_"), r"\b([rs]k_(?:live|test)_)[A-Za-z0-9]{10,}", rf"\1{MASK}"),
    _Rule(("aiza",), r"\bAIza[0-9A-Za-z_-]{20,}", f"AIza{MASK}"),
    _Rule(("npm_",), r"\bnpm_[A-Za-z0-9]{30,}", f"npm_{MASK}"),
    _Rule(("hf_",), r"\bhf_[A-Za-z0-9]{30,}", f"hf_{MASK}"),
    _Rule(("xox",), r"\bxox[abposre]-[A-Za-z0-9-]{6,}", f"xox?-{MASK}"),
    _Rule(("xapp-",), r"\bxapp-[A-Za-z0-9-]{6,}", f"xapp-{MASK}"),
    _Rule(("hooks.slack.com/",), r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+", rf"\1{MASK}"),
    _Rule(("glsa_",), r"\bglsa_[A-Za-z0-9_]+", f"glsa_{MASK}"),
    _Rule(("glc_",), r"\bglc_[A-Za-z0-9+/=_-]{16,}", f"glc_{MASK}"),
    _Rule(("eyj",), r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", f"eyJ{MASK}"),
    # mysql -p<password> (no space: with one, -p prompts), sshpass -p <password>.
    _Rule(("mysql", "mariadb"), rf"(?P<pre>\b(?i:mysql\w*|mariadb[\w-]*)\b[^\n|;&]{{0,512}}?\s-p){_VALUE}", _masked),
    _Rule(("sshpass",), rf"(?P<pre>\bsshpass\s+-p\s*){_VALUE}", _masked),
    # docker login -p <password> (podman, nerdctl, buildah, skopeo: the same flag).
    _Rule(
        ("login",),
        rf"(?P<pre>\b(?:docker|podman|nerdctl|buildah|skopeo)\b[^\n|;&]{{0,64}}?\blogin\b[^\n|;&]{{0,512}}?\s-p(?:=|\s*)){_VALUE}",
        _masked,
    ),
    # redis-cli -a <password> (and its forks).
    _Rule(
        ("redis-cli", "valkey-cli", "keydb-cli"),
        rf"(?P<pre>\b(?:redis|valkey|keydb)-cli\b[^\n|;&]{{0,512}}?\s-a\s*){_VALUE}",
        _masked,
    ),
    # htpasswd -b [file] user <password>: the password is the operand after
    # the user (with -n no file is written, so no file is named).
    _Rule(
        ("htpasswd",),
        rf"(?P<pre>\bhtpasswd{_HTPASSWD_B}(?={_FLAGS}\s+-[A-Za-z]*n){_FLAGS_SEEN}{_OPERAND}\s+){_VALUE}",
        _masked,
    ),
    _Rule(
        ("htpasswd",),
        rf"(?P<pre>\bhtpasswd{_HTPASSWD_B}(?!{_FLAGS}\s+-[A-Za-z]*n){_FLAGS_SEEN}{_OPERAND}{_OPERAND}\s+){_VALUE}",
        _masked,
    ),
    # echo <password> | docker login --password-stdin: what is echoed is the password.
    _Rule(
        ("password-stdin",),
        rf"(?P<pre>\b(?:echo|printf)(?:\s+-[neE]+)*\s+(?:(?:'%s'|\"%s\"|%s)\s+)?){_VALUE}"
        rf"(?=\s*\|[^\n;&]{{0,512}}--password-stdin)",
        _masked,
    ),
    # curl -u user:password, curl --user user:password.
    _Rule(
        ("curl",),
        rf"(?P<pre>\bcurl\b[^\n|;&]{{0,512}}?\s(?:-u\s*|--user[=\s]\s*)(?:\\?[\"'])?[^\s:\"'\\]{{1,128}}:){_VALUE}",
        _masked,
    ),
    # --token=…, --password …, --api-key …, -token=… (the name ends in the keyword).
    _Rule(
        _NAMED,
        rf"(?i)(?P<pre>(?<![\w-])--?(?:[a-z0-9][a-z0-9_-]{{0,24}}?)?{_SECRET_NAME}(?:=|[ \t]+)){_VALUE}",
        _masked,
    ),
    # user:password@ in a URL; the password may hold "@", not "/".
    _Rule(("://",), r"(://[^\s:/@\"'<>]{0,256}:)[^\s/\"'<>]{1,512}(@)", rf"\1{MASK}\2"),
    # Authorization headers, any scheme (the scheme stays), and bare bearer tokens.
    _Rule(
        ("authorization",),
        rf"""(?i)(?P<pre>\bauthorization(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?(?:[a-z][a-z0-9-]{{0,24}}[ \t]+)?+){_HEADER_VALUE}""",
        _masked,
    ),
    _Rule(("bearer",), r"(?i)\b(bearer\s+)(?![$%-])[A-Za-z0-9._~+/=-]+", rf"\1{MASK}"),
    # NAME=value, "name": "value", ?access_token=value: a name that ends in a
    # secret's keyword; in capitals also any name ending in _KEY.
    _Rule(_NAMED, rf"""(?i)(?P<pre>{_SECRET_NAME}(?:\\?["'])?[ \t]*[=:][ \t]*){_VALUE}""", _masked),
    _Rule(("_key",), rf"""(?P<pre>(?<=[A-Z0-9])_KEY(?:\\?["'])?[ \t]*[=:][ \t]*){_VALUE}""", _masked),
)


# Every rule's triggers, once: text holding none is returned as it is.
_TRIGGERS = tuple(sorted({t for rule in _RULES for t in rule.triggers}))


def redact(text: str) -> str:
    """``text`` with every secret shape it knows masked."""
    if not text.isascii():
        return _every_rule(text)  # case folding beyond ASCII: no quick check
    low = text.lower()
    if not any(t in low for t in _TRIGGERS):
        return text  # most steps, messages and log lines: a few substring searches
    for rule in _RULES:
        if any(t in low for t in rule.triggers):
            text = rule.sub(text)
    return text


def _every_rule(text: str) -> str:
    for rule in _RULES:
        text = rule.sub(text)
    return text


def is_secret_key(key: str) -> bool:
    """Whether a JSON key names a secret (``token``, ``api_key``, ``password``, ``Authorization``…)."""
    return bool(_SECRET_KEY.search(key))


def redact_json(value: Any) -> Any:
    """A JSON value with every string redacted, and the value of every key
    that names a secret masked (``{"password": "x"}`` → ``{"password":
    "****"}``): an action's arguments as a person is shown them."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and is_secret_key(k) and isinstance(v, str) and v else redact_json(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def clip_middle(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and its
    end with ``… N characters …`` between (N: what was left out), so a
    dangerous tail is never cut from what a person sees."""
    if len(text) <= limit:
        return text
    keep = max(2, limit - 30)
    head = keep * 2 // 3
    tail = keep - head
    left_out = len(text) - head - tail
    return f"{text[:head]} … {left_out} characters … {text[len(text) - tail :]}"


__all__ = ["MASK", "clip_middle", "is_secret_key", "redact", "redact_json"]
