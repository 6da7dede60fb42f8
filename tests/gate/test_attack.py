"""The real ``spanvisor hook`` attacked as a CLI would run it: whatever
stdin, policy file, signal or crash, the answer is that CLI's block (exit
status 2, the deny JSON), and an allow (exit 0) only where the policy
allows exactly that call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.clis import registry
from spanvisor.gate import contracts as gc
from spanvisor.gate.policy import PolicyError, parse
from tests.gate.blackhole import Blackhole
from tests.waiting import wait_until

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
DENY_ALL = 'default = "deny"\n'
ALLOW_LS = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env["SPANVISOR_DATA_DIR"] = str(tmp / "data")
    env["SPANVISOR_HOOK_DELIVERY"] = "off"
    return env


def shaped(cli: str, stdin: bytes) -> bytes:
    """A call written with Claude Code's keys as ``cli`` writes it (Copilot
    CLI's and Cline's own keys); anything else unchanged."""
    try:
        doc = json.loads(stdin)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return stdin
    if not isinstance(doc, dict) or "tool_name" not in doc:
        return stdin
    sid, tool, args = doc.get("session_id"), doc.get("tool_name"), doc.get("tool_input")
    if cli == "copilot":
        return json.dumps({"sessionId": sid, "toolName": tool, "toolArgs": args, "cwd": doc.get("cwd")}).encode()
    if cli == "cline":
        call = {"id": "c1", "name": tool, "input": args}
        return json.dumps({"taskId": sid, "hookName": "PreToolUse", "tool_call": call}).encode()
    return stdin


def run_hook(
    tmp: Path, cli: str, stdin: bytes, policy: bytes | str, *args: str, extra: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``spanvisor hook cli`` on ``stdin`` (a call in Claude Code's keys is
    written in the CLI's own: :func:`shaped`)."""
    path = tmp / "policy.toml"
    path.write_bytes(policy if isinstance(policy, bytes) else policy.encode())
    proc = subprocess.run(
        [SPANVISOR, "hook", cli, "--policy", str(path), *args],
        check=False,
        input=shaped(cli, stdin),
        capture_output=True,
        env={**env_for(tmp), **(extra or {})},
        timeout=120,
    )
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def decision(cli: str, out: str) -> str | None:
    """The decision in the CLI's shape, or None when stdout holds none."""
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        return None
    doc = json.loads(lines[-1])
    if cli in ("gemini", "opencode", "pi", "kilo"):
        return str(doc["decision"])
    if cli == "copilot":
        return str(doc["permissionDecision"])
    if cli == "cline":  # a block stops the run (cancel) or the shell call alone (overrideInput)
        return "deny" if doc.get("cancel") or "overrideInput" in doc else "allow"
    if cli == "codex" and doc == {}:  # Codex's allow: nothing said (it rejects permissionDecision: allow)
        return "allow"
    inner = doc["hookSpecificOutput"]
    return str(inner.get("permissionDecision") or inner["decision"]["behavior"])


def assert_block(cli: str, code: int, out: str, err: str, failure: bool = True) -> None:
    """Blocked: a failure by exit status 2 (with or without the deny JSON), a
    policy's deny by the deny JSON (exit 0, as the CLI documents it); for
    Cline, its deny with status 0 (status 2 only when no answer could be
    written, which its hook script turns into a stop)."""
    said = decision(cli, out)
    blocked = gc.block_status(cli)  # Cline's block is status 0 with its deny (it runs a call on any other)
    if blocked == 0:
        assert (code == 0 and said == "deny") or (code == 2 and said is None), (code, out, err)
    else:
        assert (code == 2 and said in ("deny", None)) or (not failure and code == 0 and said == "deny"), (
            code,
            out,
            err,
        )
    assert "Traceback" not in err, err


def call_bytes(command: str, cli: str = "claude-code") -> bytes:
    return json.dumps({"session_id": "s1", "tool_name": "Bash", "tool_input": {"command": command}}).encode()


HOSTILE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(registry.NAMES),
    st.one_of(
        st.binary(max_size=200),
        HOSTILE_JSON.map(lambda v: json.dumps(v).encode()),
        st.builds(
            lambda tool, value: json.dumps({"session_id": "s", "tool_name": tool, "tool_input": value}).encode(),
            st.one_of(st.text(max_size=10), st.integers()),
            HOSTILE_JSON,
        ),
        st.integers(1_000, 5_000).map(lambda n: b'{"tool_name": "Bash", "tool_input": ' + b"[" * n + b"]" * n + b"}"),
    ),
)
def test_any_stdin_ends_in_a_block_under_a_deny_policy(tmp_path: Path, cli: str, stdin: bytes) -> None:
    code, out, err = run_hook(tmp_path, cli, stdin, DENY_ALL)
    assert_block(cli, code, out, err, failure=False)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.just(b'default = "allow"\n\xe9'),
        st.just(b"x = " + b"[" * 3000 + b"]" * 3000),
        st.just(b'default = "alow"\n'),
    )
)
def test_any_policy_file_that_is_not_a_valid_policy_is_a_block(tmp_path: Path, policy: bytes) -> None:
    code, out, err = run_hook(tmp_path, "claude-code", call_bytes("ls"), policy)
    try:
        import tomllib

        valid = parse(tomllib.loads(policy.decode("utf-8")))
    except (PolicyError, UnicodeDecodeError, ValueError, RecursionError):
        valid = None
    if valid is None:
        assert_block("claude-code", code, out, err)
    else:
        assert code in (0, 2) and decision("claude-code", out) in ("allow", "deny")


@pytest.mark.parametrize("cli", registry.NAMES)
def test_chained_commands_are_blocked_and_plain_ones_allowed_by_the_real_hook(tmp_path: Path, cli: str) -> None:
    for command in ("ls && touch pwned.txt", "ls; cat README.md", "ls | sh", "ls $(rm -rf ~/prod)", "ls\nrm x"):
        code, out, err = run_hook(tmp_path, cli, call_bytes(command), ALLOW_LS)
        assert_block(cli, code, out, err, failure=False)
    code, out, _ = run_hook(tmp_path, cli, call_bytes("ls -la"), ALLOW_LS)
    assert (code, decision(cli, out)) == (0, "allow")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _waiting_hook(tmp_path: Path, cli: str) -> subprocess.Popen[bytes]:
    """The real hook with its stdin left open: it waits to read the call."""
    (tmp_path / "policy.toml").write_text(DENY_ALL)
    return subprocess.Popen(
        [SPANVISOR, "hook", cli, "--policy", str(tmp_path / "policy.toml")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(tmp_path),
    )


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc for the child")
@pytest.mark.parametrize("cli", registry.NAMES)
def test_a_crash_of_the_deciding_process_is_a_block(tmp_path: Path, cli: str) -> None:
    proc = _waiting_hook(tmp_path, cli)
    try:
        deadline = time.monotonic() + 60
        while not (kids := _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kids, "the hook decides in a child process"
        os.kill(kids[0], signal.SIGSEGV)  # as a native crash would end it
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_block(cli, proc.returncode, out.decode(), err.decode())
    assert "signal 11" in err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_while_the_hook_waits_is_a_block(tmp_path: Path, sig: signal.Signals) -> None:
    proc = _waiting_hook(tmp_path, "gemini")
    try:
        deadline = time.monotonic() + 60
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert_block("gemini", proc.returncode, out.decode(), err.decode())


def test_a_silent_control_api_is_a_block_before_the_clis_timeout(tmp_path: Path) -> None:
    hole = Blackhole()
    try:
        args = ("--cli-timeout", "4", "--url", hole.url, "--endpoint", hole.url)
        stdin = json.dumps({"session_id": "s1", "tool_name": "Bash", "tool_input": {"command": "make"}}).encode()
        code, out, err = run_hook(tmp_path, "gemini", stdin, 'default = "ask"\n', *args)
        assert hole.accepted.is_set(), "the hook asked the control API"
        assert_block("gemini", code, out, err, failure=False)
    finally:
        hole.close()


def test_the_policy_answer_imports_no_otel_asyncio_or_http_client(tmp_path: Path) -> None:
    code, _, err = run_hook(
        tmp_path, "claude-code", call_bytes("ls -la"), ALLOW_LS, extra={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert code == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    heavy = {m for m in imported if m.split(".")[0] in ("opentelemetry", "asyncio", "requests", "urllib3", "grpc")}
    # Nor the idna codec, which a text host handed to the socket module loads
    # (1 to 2 ms with stringprep and unicodedata): gate.otlp.host_arg; nor
    # weakref, which the copy module imports (2 ms): hook.command._copied.
    heavy |= imported & {"encodings.idna", "stringprep", "weakref"}
    assert imported and not heavy, sorted(heavy)


def test_the_answer_never_waits_for_the_note(tmp_path: Path) -> None:
    """With the receiver silent, the policy's answer is given and the hook
    has exited while its note's delivery still waits on the receiver."""
    hole = Blackhole()
    try:
        env: dict[str, Any] = {"SPANVISOR_HOOK_DELIVERY": "on", "SPANVISOR_OTLP_ENDPOINT": hole.url}
        code, out, _ = run_hook(tmp_path, "claude-code", call_bytes("ls"), ALLOW_LS, extra=env)
        assert (code, decision("claude-code", out)) == (0, "allow")
        assert hole.accepted.wait(60), "the hook reached the receiver"
        spool = tmp_path / "data" / "hook-spool"
        # The answer goes first; the note is spooled just after (the hook's
        # look at the session's cancel may be what reached the hole first).
        wait_until(
            lambda: spool.is_dir() and [p for p in spool.iterdir() if p.suffix == ".json"],
            60,
            "the note to wait in the spool, not lost",
        )
    finally:
        hole.close()


@pytest.mark.parametrize("cli", registry.NAMES)
def test_a_command_over_the_cap_is_denied_with_the_reason(tmp_path: Path, cli: str) -> None:
    """Over 100,000 characters nothing is read: a deny (it was ``unreadable``,
    which asks), even under a policy that would ask or allow the start."""
    command = "ls " + "x" * 100_000 + " ; rm -rf ~/prod"
    code, out, err = run_hook(tmp_path, cli, call_bytes(command), 'default = "allow"\n' + ALLOW_LS.split("\n", 1)[1])
    assert (code, decision(cli, out)) == (registry.need(cli).deny_status, "deny"), (code, out, err)
    assert "over the 100,000 the gate reads" in out
