"""The rule language shared by the hook and the server: the conditions on
the agent, the CLI, the owner and the task (a fact unknown where a rule is
matched is taken at its strictest), ``from``, the central policy's versions
and reloads, the strictest of a local and the central ruling, and what
``policy check`` finds. Property tests over policies and calls."""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.gate import central, lint
from spanvisor.gate.contracts import Call
from spanvisor.gate.policy import PolicyError, Ruling, parse
from spanvisor.gate.requirement import STRICTNESS, Requirement, at_least, narrower, raised
from spanvisor.gate.rules import Facts, server_facts


def bash(command: str) -> Call:
    return Call("claude-code", "PreToolUse", "s1", "Bash", {"command": command}, "t1", "/work")


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {"agent": ("claude-code",), "cli": ("claude-code",), "owner": ("alice",)}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_rules_on_the_agent_cli_owner_and_task() -> None:
    p = parse(
        {
            "rule": [
                {"name": "codex-deploys", "cli": "codex", "command": "deploy *", "decision": "deny"},
                {"name": "bobs", "owner": "bob", "decision": "ask", "approvers": 2},
                {"name": "infra", "task": {"repo": "*/infra"}, "decision": "ask", "from": ["group:sre"]},
                {"name": "rest", "decision": "allow"},
            ]
        },
        central=True,
    )
    done = {"id": ("t",), "name": (), "repo": ("acme/app",)}
    assert p.decide(bash("deploy prod"), facts(cli=("codex",), agent=("codex_exec",), task=done)).verdict == "deny"
    assert p.decide(bash("deploy prod"), facts(task=done)).by == "central:rest"
    assert p.decide(bash("ls"), facts(owner=("bob",), task=done))[::3] == ("ask", 2)
    infra = {**done, "repo": ("acme/infra",)}
    got = p.decide(bash("ls"), facts(task=infra))
    assert (got.verdict, got.approvers_from, got.by) == ("ask", ("group:sre",), "central:infra")
    # A fact known to be absent matches no glob: a task without an owner is not bob's.
    assert p.decide(bash("ls"), facts(owner=(), task=done)).verdict == "allow"


def test_a_fact_unknown_where_the_rule_is_matched_is_taken_at_its_strictest() -> None:
    """A hook does not know the task's repository: a rule on it may apply,
    so the ruling is the stricter of it and what the rules after it say."""
    p = parse(
        {
            "rule": [
                {"name": "infra", "task": {"repo": "*/infra"}, "decision": "ask", "approvers": 2},
                {"name": "infra-ok", "task": {"repo": "*/infra"}, "command": "ls*", "decision": "allow"},
                {"name": "no-rm", "command": "rm *", "decision": "deny"},
            ]
        },
        central=True,
    )
    unknown = facts(task={"id": ("t",)})
    assert p.decide(bash("ls"), unknown)[::3] == ("ask", 2)
    assert p.decide(bash("rm -rf x"), unknown).verdict == "deny"
    # An allow that may apply never allows by itself.
    q = parse({"rule": [{"name": "infra-ok", "task": {"repo": "*/infra"}, "decision": "allow"}], "default": "ask"})
    assert q.decide(bash("ls"), unknown).verdict == "ask"
    # A Codex hook may be codex_exec or codex_tui: a rule on one of them may apply.
    r = parse({"rule": [{"name": "tui", "agent": "codex_tui", "decision": "deny"}]}, central=True)
    assert r.decide(bash("ls"), facts(agent=("codex_exec", "codex_tui"))).verdict == "deny"
    assert r.decide(bash("ls"), facts(agent=("codex_exec",))).verdict == "allow"


def test_paths_and_urls_have_conditions_of_their_own() -> None:
    p = parse(
        {
            "rule": [
                {"name": "secrets", "path": ["/etc/*", "*.pem"], "decision": "deny"},
                {"name": "web", "url": "https://*.internal/*", "decision": "ask", "approvers": 2},
            ]
        },
        central=True,
    )
    read = Call("claude-code", "PreToolUse", "s", "Read", {"file_path": "/etc/shadow"}, "t")
    assert p.decide(read, resolve=False).verdict == "deny"
    fetch = Call("claude-code", "PreToolUse", "s", "WebFetch", {"url": "https://wiki.internal/x"}, "t")
    assert p.decide(fetch)[::3] == ("ask", 2)
    # A URL rule is not a path rule, nor the other way round.
    assert p.decide(bash("cat /etc/shadow")).verdict == "allow"


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ({"decision": "deny", "from": ["group:sre"]}, 'from is for decision = "ask"'),
        ({"decision": "ask", "from": []}, "from must be"),
        ({"decision": "ask", "from": ["group: "]}, "is not group:NAME"),
        ({"decision": "ask", "task": {"colour": "red"}}, "unknown key(s) colour"),
        ({"decision": "ask", "owner": ""}, "owner must be a glob"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rule: dict[str, object], why: str) -> None:
    with pytest.raises(PolicyError, match=None) as got:
        parse({"rule": [{"name": "r", **rule}]})
    assert why in str(got.value)


def test_from_is_normalised_as_a_request_takes_it() -> None:
    p = parse({"rule": [{"name": "r", "decision": "ask", "from": ["group: sre ", "alice", "alice"]}]})
    assert p.rules[0].approvers_from == ("group:sre", "alice")


def test_a_central_policys_default_is_allow_and_a_hooks_ask() -> None:
    assert parse({}, central=True).decide(bash("make")).verdict == "allow"
    assert parse({}).decide(bash("make")).verdict == "ask"


def test_a_request_without_an_action_is_matched_only_by_rules_on_the_agent_and_task() -> None:
    c = central.from_files((("p.toml", '[[rule]]\nname = "any-tool"\ntool = "*"\ndecision = "deny"\n'),), "p")
    assert c.requirement(None, server_facts("rivet", None, "t", None, None)).verdict == "allow"
    d = central.from_files((("p.toml", '[[rule]]\nname = "rivet"\nagent = "riv*"\ndecision = "deny"\n'),), "p")
    assert d.requirement(None, server_facts("rivet", None, "t", None, None)).verdict == "deny"


# --- versions ---------------------------------------------------------------


def test_a_version_is_the_name_and_the_hash_of_the_files(tmp_path: Path) -> None:
    f = tmp_path / "acme.toml"
    f.write_text('[[rule]]\nname = "r"\ndecision = "deny"\ncommand = "rm *"\n')
    one = central.load(str(f))
    assert one.version.startswith("acme@") and len(one.version) == len("acme@") + 12
    f.write_text('name = "security"\n[[rule]]\nname = "r"\ndecision = "deny"\ncommand = "rm *"\n')
    two = central.load(str(f))
    assert two.version.startswith("security@") and two.sha256 != one.sha256
    assert central.load(str(f)).sha256 == two.sha256
    # A directory: its files in name order, a setting in one file only.
    d = tmp_path / "policy.d"
    d.mkdir()
    (d / "10-deny.toml").write_text('[[rule]]\nname = "no-rm"\ncommand = "rm *"\ndecision = "deny"\n')
    (d / "20-ask.toml").write_text('default = "allow"\n[[rule]]\nname = "prod"\ncommand = "*prod*"\ndecision = "ask"\n')
    got = central.load(str(d))
    assert [r.name for r in got.policy.rules] == ["no-rm", "prod"] and got.name == "policy.d"
    (d / "30-again.toml").write_text('default = "deny"\n')
    with pytest.raises(PolicyError, match=r"default is set in 20-ask\.toml already"):
        central.load(str(d))


def test_the_published_document_is_checked_against_its_version(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[[rule]]\nname = "r"\ncommand = "rm *"\ndecision = "deny"\n')
    doc = central.document(central.load(str(f)))
    assert central.from_document(doc).sha256 == doc["sha256"]
    doc["files"][0]["text"] = doc["files"][0]["text"].replace("deny", "allow")
    with pytest.raises(PolicyError, match="do not match its version"):
        central.from_document(doc)


def test_the_holder_reloads_on_a_change_and_keeps_the_last_good_version(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[[rule]]\nname = "r"\ncommand = "rm *"\ndecision = "deny"\n')
    h = central.Holder(str(f), poll_s=0.0)
    told: list[int] = []
    h.on_reload.append(lambda: told.append(1))
    first = h.version
    f.write_text('[[rule]]\nname = "r"\ncommand = "rm *"\ndecision = "ask"\n')
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert h.version != first and told == [1]
    assert h.requirement({"tool": "Bash", "arguments": {"command": "rm x"}}, Facts()).verdict == "ask"
    second = h.version
    f.write_text('default = "alow"\n')
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert h.version == second and h.error is not None and "alow" in h.error
    assert h.document()["reload_error"] == h.error and told == [1]


# --- the strictest wins -------------------------------------------------------

FROMS = [(), ("group:sre",), ("group:sre", "alice"), ("group:dev",), ("alice",)]
rulings = st.builds(
    lambda v, n, f, who: Ruling(v, who, None, n if v == "ask" else 1, f if v == "ask" else ()),
    st.sampled_from(["allow", "ask", "deny"]),
    st.integers(1, 5),
    st.sampled_from(FROMS),
    st.sampled_from(["policy:a", "central:b"]),
)


def _req(r: Ruling) -> Requirement:
    return Requirement(r.verdict, r.approvers, r.approvers_from, r.by)


@given(rulings, rulings)
def test_the_combined_ruling_is_never_less_than_the_central_one_nor_the_local_one(local: Ruling, c: Ruling) -> None:
    got = central.combine(local, c)
    assert at_least(_req(got), _req(c)), (local, c, got)
    assert STRICTNESS[got.verdict] >= STRICTNESS[local.verdict]
    if got.verdict == "ask":
        assert got.approvers >= max(local.approvers if local.verdict == "ask" else 1, c.approvers)


@given(st.integers(1, 5), st.sampled_from(FROMS), rulings)
def test_a_raised_request_needs_at_least_the_floor_and_what_it_asked(n: int, only: tuple[str, ...], c: Ruling) -> None:
    floor = _req(c)
    got = raised(n, only, "request", floor)
    if floor.verdict == "deny":
        assert got.denied
        return
    assert got.approvers >= n and got.denied is None
    if floor.verdict == "ask":
        assert got.approvers >= floor.approvers
        assert {x.casefold() for x in got.approvers_from} <= {x.casefold() for x in floor.approvers_from} or not (
            floor.approvers_from
        )
    assert narrower((), only) == only


COMMANDS = ["deploy prod", "deploy staging", "git push origin main", "git push --force", "ls -la", "rm -rf build"]
GLOBS = [None, "deploy *", "git push*", "*prod*", "rm *", "*"]
rule = st.fixed_dictionaries(
    {
        "decision": st.sampled_from(["allow", "ask", "deny"]),
        "command": st.sampled_from(GLOBS),
        "approvers": st.integers(1, 3),
        "from": st.sampled_from(FROMS),
    }
)


def _policy(raw: list[dict[str, object]], is_central: bool) -> object:
    rules = []
    for i, r in enumerate(raw):
        doc: dict[str, object] = {"name": f"r{i}", "decision": r["decision"]}
        if r["command"] is not None:
            doc["command"] = r["command"]
        if r["decision"] == "ask":
            doc["approvers"] = r["approvers"]
            if r["from"]:
                doc["from"] = list(r["from"])  # type: ignore[call-overload]
        rules.append(doc)
    return parse({"rule": rules}, central=is_central)


def _oracle(raw: list[dict[str, object]], command: str) -> Requirement:
    """What a central policy requires of a simple command, worked out by
    hand: denied when a deny rule matches it (deny rules see the whole
    command wherever they stand), else the first rule whose glob matches,
    else allow."""
    if any(
        r["decision"] == "deny" and (r["command"] is None or fnmatch.fnmatchcase(command, str(r["command"])))
        for r in raw
    ):
        return Requirement("deny")
    for r in raw:
        glob = r["command"]
        if glob is None or fnmatch.fnmatchcase(command, str(glob)):
            if r["decision"] == "ask":
                return Requirement("ask", int(r["approvers"]), tuple(r["from"]))  # type: ignore[arg-type,call-overload]
            return Requirement(r["decision"])  # type: ignore[arg-type]
    return Requirement("allow")


@settings(max_examples=300, deadline=None)
@given(st.lists(rule, max_size=4), st.lists(rule, max_size=4), st.sampled_from(COMMANDS), st.sampled_from(["&&", ""]))
def test_a_hooks_answer_is_never_less_than_the_central_floor(
    central_rules: list[dict[str, object]], local_rules: list[dict[str, object]], command: str, chain: str
) -> None:
    """Whatever the local policy says, the call the hook answers needs at
    least what the central policy requires of it (alone, or chained after
    an innocent command)."""
    c = _policy(central_rules, True)
    local = _policy(local_rules, False)
    text = f"true {chain} {command}" if chain else command
    theirs = c.decide(bash(text))  # type: ignore[attr-defined]
    got = central.combine(local.decide(bash(text)), theirs)  # type: ignore[attr-defined]
    assert at_least(_req(got), _req(theirs)), (text, got, theirs)
    if not chain:
        floor = _oracle(central_rules, command)
        assert at_least(_req(theirs), floor), ("the central policy's own ruling", text, theirs, floor)


# --- policy check --------------------------------------------------------------


def test_policy_check_names_rules_no_call_reaches_and_no_others() -> None:
    p = parse(
        {
            "rule": [
                {"name": "git", "command": "git *", "decision": "ask"},
                {"name": "push", "command": "git push*", "decision": "ask", "approvers": 2},
                {"name": "ls-ok", "command": "ls*", "decision": "allow"},
                {"name": "ls-no", "command": "ls /secret*", "decision": "deny"},  # a deny after an allow: reachable
                {"name": "sre-only", "decision": "ask", "from": ["group:sre"]},
                {"name": "late", "tool": "Read", "decision": "allow"},
            ]
        }
    )
    found = {f.rule: f.message for f in lint.findings(p.rules)}
    assert set(found) == {"push", "late", "default"}, found
    assert "shadowed by rule 'git'" in found["push"] and "unreachable" in found["late"]
