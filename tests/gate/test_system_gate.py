"""The system gate (``spanvisor gate serve``) in a trust domain of its own,
attacked by an agent running as another Unix user.

As root, the test lays out what an operator's install would: the gate runs
as uid :data:`GATE` (its home, its spool and its central copy 0700), the
policy is root's (0644), the socket's directory is the gate's (0750, group
:data:`AGENTS`). The agent runs as uid :data:`AGENT` in group
:data:`AGENTS` and calls ``spanvisor hook claude-code --gate SOCKET`` as a
CLI's managed settings would. Numeric ids need no entries in
``/etc/passwd``: ``setpriv`` switches to them, and the kernel names them on
the socket.

Under a policy that allows ``ls`` and nothing else, every trick of the
agent's ends in a deny or a block: its own policy, central mode, server and
socket in the hook's environment; a request written by hand with a
``--policy`` of its own; writing the gate's policy, replacing its socket,
reading its home; a gate that is down; a user outside the agents' group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spanvisor.gate import local
from tests.gate.test_attack import assert_block, call_bytes, decision
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CI runs as root)"),
    pytest.mark.timeout_s(120),
]

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
GATE, AGENT, STRANGER, AGENTS = 47_201, 47_202, 47_203, 47_210
ALLOW_LS = 'default = "deny"\n[[rule]]\nname = "ls"\ncommand = ["ls", "ls *"]\ndecision = "allow"\n'
ALLOW_ALL = 'default = "allow"\n'


def as_user(uid: int, groups: tuple[int, ...] = ()) -> list[str]:
    """The command prefix that runs as ``uid`` (its own gid) with ``groups``."""
    extra = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return ["setpriv", "--reuid", str(uid), "--regid", str(uid), *extra, "--"]


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), SPANVISOR_DATA_DIR=str(home / "data"))
    return env


@dataclass
class Install:
    root: Path
    socket: Path
    policy: Path
    gate_home: Path
    agent_home: Path
    proc: subprocess.Popen[bytes]

    def hook(
        self,
        command: str,
        uid: int = AGENT,
        groups: tuple[int, ...] = (AGENTS,),
        raw: bytes | None = None,
        **extra: str,
    ) -> tuple[int, str, str]:
        """``spanvisor hook claude-code --gate SOCKET`` as the agent runs it
        (``raw``: the CLI's input, else a Bash call of ``command``)."""
        env = {**base_env(self.agent_home), **extra}
        done = subprocess.run(
            [*as_user(uid, groups), SPANVISOR, "hook", "claude-code", "--gate", str(self.socket)],
            input=call_bytes(command) if raw is None else raw,
            capture_output=True,
            env=env,
            cwd=str(self.agent_home),
            timeout=60,
            check=False,
        )
        return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")

    def as_agent(self, code: str) -> subprocess.CompletedProcess[str]:
        """Python run as the agent (in the agents' group)."""
        return subprocess.run(
            [*as_user(AGENT, (AGENTS,)), sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            env=base_env(self.agent_home),
            timeout=60,
            check=False,
        )


def _owned(path: Path, uid: int, gid: int, mode: int) -> Path:
    path.mkdir(exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def running_gate(
    root: Path, policy: Path, endpoint: str, *extra: str
) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """``spanvisor gate serve`` as uid :data:`GATE` under ``root``, its
    records sent to ``endpoint``: (its socket, its home, its process)."""
    run = _owned(root / "run", GATE, AGENTS, 0o750)
    gate_home = _owned(root / "gate-home", GATE, GATE, 0o700)
    sock = run / "gate.sock"
    env = {**base_env(gate_home), "SPANVISOR_HOOK_DELIVERY": "off"}
    log = (root / "gate.log").open("wb")
    proc = subprocess.Popen(
        [
            *as_user(GATE, (AGENTS,)),
            SPANVISOR,
            "gate",
            "serve",
            "--socket",
            str(sock),
            "--policy",
            str(policy),
            "--group",
            str(AGENTS),
            "--central",
            "off",
            "--endpoint",
            endpoint,
            *extra,
        ],
        env=env,
        # A file, not a pipe nobody reads: a full pipe would hold the gate's
        # writes, and its exit, for good.
        stderr=log,
    )
    try:
        wait_until(sock.exists, 30, "the system gate's socket")
        yield sock, gate_home, proc
    finally:
        proc.terminate()
        # It stops on SIGTERM (its stderr went to a pipe nobody read before,
        # and once, in a fresh-clone CI run, it did not exit within 10 s;
        # once more within 30 s under -n 2: its threads' stacks then go to
        # its log, printed below, before it is killed).
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            proc.kill()
            proc.wait(30)
            raise
        finally:
            log.close()
            print(f"--- the gate's stderr ---\n{(root / 'gate.log').read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def installed(
    rules: str, endpoint: str = "http://127.0.0.1:9", *extra: str, before: Callable[[Path], list[str]] | None = None
) -> Iterator[Install]:
    """An operator's install under a fresh folder: root's ``rules`` (0644),
    the agent's home, the gate running with ``endpoint`` (by default none:
    the notes wait in the gate's own spool) and ``extra`` options, and what
    ``before`` lays out in the folder first (options it adds)."""
    # Not under pytest's own temporary folder: it is root's, 0700.
    root = Path(tempfile.mkdtemp(prefix="spanvisor-system-gate-"))
    os.chmod(root, 0o755)
    try:
        policy = root / "policy.toml"
        policy.write_text(rules)
        os.chmod(policy, 0o644)
        agent_home = _owned(root / "agent-home", AGENT, AGENT, 0o700)
        more = before(root) if before is not None else []
        with running_gate(root, policy, endpoint, *extra, *more) as (sock, gate_home, proc):
            yield Install(root, sock, policy, gate_home, agent_home, proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    with installed(ALLOW_LS) as made:
        yield made


def test_the_gate_decides_by_its_own_policy(install: Install) -> None:
    code, out, err = install.hook("ls -la")
    assert (code, decision("claude-code", out)) == (0, "allow"), (code, out, err)
    code, out, err = install.hook("touch pwned.txt")
    assert_block("claude-code", code, out, err, failure=False)
    assert not (install.agent_home / "pwned.txt").exists()


def test_the_agents_environment_changes_nothing(install: Install) -> None:
    mine = install.agent_home / "mine.toml"
    made = install.as_agent(f"open({str(mine)!r}, 'w').write({ALLOW_ALL!r})")
    assert made.returncode == 0, made.stderr
    fake = install.agent_home / "fake.sock"
    code, out, err = install.hook(
        "touch pwned.txt",
        SPANVISOR_HOOK_POLICY=str(mine),
        SPANVISOR_CENTRAL_POLICY="off",
        SPANVISOR_GATE_SOCKET=str(fake),
        SPANVISOR_CONTROL_URL="http://127.0.0.1:9",
    )
    assert_block("claude-code", code, out, err, failure=False)


def test_a_request_written_by_hand_cannot_choose_the_policy(install: Install) -> None:
    mine = install.agent_home / "mine.toml"
    install.as_agent(f"open({str(mine)!r}, 'w').write({ALLOW_ALL!r})")
    frame = local.frame(
        {
            "argv": ["claude-code", "--policy", str(mine), "--central", "off", "--url", "http://127.0.0.1:9"],
            "stdin": call_bytes("touch pwned.txt").decode(),
            "started": 0,
            "cwd": str(install.agent_home),
            "env": {"SPANVISOR_HOOK_POLICY": str(mine)},
        }
    )
    code = f"""
import socket, sys, json
s = socket.socket(socket.AF_UNIX)
s.connect({str(install.socket)!r})
s.sendall({frame!r})
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(json.loads(data[4:])["stdout"])
"""
    got = install.as_agent(code)
    assert got.returncode == 0, got.stderr
    assert decision("claude-code", got.stdout) == "deny", got.stdout


def test_the_agent_cannot_write_the_policy_replace_the_socket_stop_the_gate_or_edit_the_client(
    install: Install,
) -> None:
    for attempt in (
        f"open({str(install.policy)!r}, 'a').write('default = \"allow\"')",
        f"import os; os.unlink({str(install.socket)!r})",
        f"import os; os.rename({str(install.socket)!r}, {str(install.socket)!r} + '.old')",
        f"import socket; socket.socket(socket.AF_UNIX).bind({str(install.socket.parent / 'mine.sock')!r})",
        f"import os; os.listdir({str(install.gate_home)!r})",
        f"import os, signal; os.kill({install.proc.pid}, signal.SIGTERM)",  # the gate itself
        f"open({SPANVISOR!r}, 'a').write('')",  # the hook's client, root's like the rest of the install
    ):
        got = install.as_agent(attempt)
        assert got.returncode != 0 and "PermissionError" in got.stderr, (attempt, got.stdout, got.stderr)
    assert install.policy.read_text() == ALLOW_LS and install.socket.exists()


def test_a_user_outside_the_agents_group_is_not_answered(install: Install) -> None:
    code, out, err = install.hook("ls", uid=STRANGER, groups=())
    # The socket is 0660 in a 0750 folder: a stranger cannot even reach it.
    assert_block("claude-code", code, out, err)
    assert "cannot be asked" in err or "gave no answer" in err, err


def test_a_stranger_who_reaches_the_socket_is_closed_unanswered(install: Install) -> None:
    """The socket's modes are one guard, the kernel's word on the peer is the
    other: a process that holds a connection but is of neither the gate's
    user nor the agents' group (root's descriptor handed down) gets nothing."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(install.socket))
        fd = os.dup(s.fileno())
    code = f"""
import os, socket
s = socket.socket(fileno={fd})
try:
    s.sendall({local.frame({"argv": ["claude-code"], "stdin": call_bytes("ls").decode(), "cwd": "/", "env": {}})!r})
    print("closed" if s.recv(10) == b"" else "answered")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"""
    # The connection's peer is root (who connected), in no group of the gate: closed unanswered.
    got = subprocess.run(
        [*as_user(STRANGER), sys.executable, "-I", "-c", code],
        pass_fds=(fd,),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    os.close(fd)
    assert got.stdout.strip() == "closed", (got.stdout, got.stderr)


def test_a_gate_that_is_down_is_a_block(install: Install) -> None:
    missing = install.root / "run" / "nobody.sock"
    env = base_env(install.agent_home)
    done = subprocess.run(
        [*as_user(AGENT, (AGENTS,)), SPANVISOR, "hook", "claude-code", "--gate", str(missing)],
        input=call_bytes("ls"),
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert_block("claude-code", done.returncode, done.stdout.decode(), done.stderr.decode())
    assert "cannot be asked" in done.stderr.decode()


def test_the_gate_refuses_a_socket_folder_others_can_write(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="spanvisor-open-"))
    try:
        os.chmod(folder, 0o777)
        done = subprocess.run(
            [SPANVISOR, "gate", "serve", "--socket", str(folder / "g.sock"), "--policy", "/dev/null"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and "writable by others" in done.stderr, done.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_notes_wait_in_the_gates_own_spool(install: Install) -> None:
    install.hook("touch pwned-again.txt")
    spool = install.gate_home
    found = wait_until(
        lambda: [p for p in spool.rglob("*.json") if "spool" in str(p) or "notes" in str(p)] or None,
        30,
        "the audit note in the gate's spool",
    )
    assert all(p.stat().st_uid == GATE for p in found), found
    assert json.loads(found[0].read_text())  # a note, not the agent's to read: its home is 0700


def _notes(install: Install, command: str) -> list[dict[str, object]]:
    """The gate's audit notes (in its own spool: no serve here) of the call
    running ``command``."""
    out = []
    for path in install.gate_home.rglob("hook-spool/*.json"):
        note = json.loads(path.read_text())
        if any(command in str(attrs.get("agent.message", "")) for _, attrs, _ in note["records"]):
            out.append(note)
    return out


def test_a_repositorys_env_block_names_no_task_and_no_agent(install: Install) -> None:
    """Claude Code applies a repository's settings ``env`` block to its
    hooks: another task there would file the session's calls (and look for
    a cancel) under it, and another agent would choose what a rule's
    ``agents`` condition reads. The gate drops both: the call is its CLI
    session's own."""
    code, out, err = install.hook(
        "ls -1",
        SPANVISOR_TASK_ID="victims-task",
        SPANVISOR_TASK_AGENT="trusted-bot",
        OTEL_RESOURCE_ATTRIBUTES=("spanvisor.task.id=victims-task,service.name=x"),
    )
    assert (code, decision("claude-code", out)) == (0, "allow"), (code, out, err)
    [note] = wait_until(lambda: _notes(install, "ls -1"), 30, "the call's note")
    assert note["session"] == ["s1", "claude-code", False], note["session"]


LAUNCHER = """
import subprocess, sys
from spanvisor.launcher import system_gate
held, said = system_gate.tell([sys.argv[1]], "launched-7", "claude-code", None)
print("told" if held and not said else f"not told: {said}", flush=True)
sys.stdin.buffer.readline()  # the test runs a hook beside this one, then says go
done = subprocess.run(sys.argv[2:], input=sys.stdin.buffer.read(), capture_output=True)
print(done.returncode, done.stdout.decode(), flush=True)
"""


def test_a_launcher_that_told_the_gate_gives_its_task_to_the_calls_below_it_only(install: Install) -> None:
    """``spanvisor run`` tells the gate its session on a connection it keeps
    (its pid by the kernel's word): a hook below it is decided under its
    task, whatever the hook's environment says; a hook of the same user
    beside it, under its own session."""
    env = {**base_env(install.agent_home), "SPANVISOR_TASK_ID": "someone-elses"}
    hook = [SPANVISOR, "hook", "claude-code", "--gate", str(install.socket)]
    launcher = subprocess.Popen(
        [*as_user(AGENT, (AGENTS,)), sys.executable, "-c", LAUNCHER, str(install.socket), *hook],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=str(install.agent_home),
    )
    try:
        assert launcher.stdin is not None and launcher.stdout is not None
        assert launcher.stdout.readline().decode().strip() == "told"
        code, out, err = install.hook("ls -2", SPANVISOR_TASK_ID="launched-7")  # beside it: not below
        assert (code, decision("claude-code", out)) == (0, "allow"), (code, out, err)
        launcher.stdin.write(b"go\n" + call_bytes("ls -3"))
        launcher.stdin.close()
        said = launcher.stdout.read().decode()
        assert launcher.wait(60) == 0 and said.startswith("0 "), said
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)
    [beside] = wait_until(lambda: _notes(install, "ls -2"), 30, "the note of the call beside it")
    [below] = wait_until(lambda: _notes(install, "ls -3"), 30, "the note of the call below it")
    assert beside["session"] == ["s1", "claude-code", False], beside["session"]
    assert below["session"] == ["launched-7", "claude-code", True], below["session"]


def test_spanvisor_run_tells_the_gate_its_hooks_name_and_its_cli_s_calls_are_its_tasks(install: Install) -> None:
    """The real launcher, as the agent: it finds the system gate in the
    CLI's hook entry (``--gate SOCKET`` in the user's Claude Code
    settings), tells it the session before the CLI starts, and the CLI's
    hook call is decided under the launched task, not the one its
    environment names."""
    home = install.agent_home
    hook = f"{SPANVISOR} hook claude-code --gate {install.socket}"
    claude_dir = home / ".claude"
    settings = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"type": "command", "command": hook}]}]}}
    made = install.as_agent(
        f"import json, os; os.makedirs({str(claude_dir)!r}, exist_ok=True);"
        f" open({str(claude_dir / 'settings.json')!r}, 'w').write({json.dumps(settings)!r})"
    )
    assert made.returncode == 0, made.stderr
    bin_dir = home / "bin"
    fake = (
        "#!/bin/sh\n"  # a CLI that runs its hook once, as Claude Code would, then ends
        f"printf '%s' '{call_bytes('ls -4').decode()}' | {hook} > {home / 'answer.json'}\n"
    )
    made = install.as_agent(
        f"import os; os.makedirs({str(bin_dir)!r}, exist_ok=True); p = {str(bin_dir / 'claude')!r};"
        f" open(p, 'w').write({fake!r}); os.chmod(p, 0o755)"
    )
    assert made.returncode == 0, made.stderr
    env = {**base_env(home), "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "SPANVISOR_TASK_ID": "from-the-env"}
    launch = ["--endpoint", "http://127.0.0.1:9", "--task-id", "run-task-1"]
    done = subprocess.run(
        [*as_user(AGENT, (AGENTS,)), SPANVISOR, "run", *launch, "--", "claude", "-p", "list the files"],
        capture_output=True,
        env=env,
        cwd=str(home),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "did not take this session" not in done.stderr.decode(errors="replace")
    assert decision("claude-code", (home / "answer.json").read_text()) == "allow"
    [note] = wait_until(lambda: _notes(install, "ls -4"), 30, "the CLI's call's note")
    assert note["session"] == ["run-task-1", "claude-code", True], note["session"]


FORGED_END = """
import sys, time
from spanvisor.hook.task import SessionTask, otlp_args
task = SessionTask(sys.argv[1], "claude-code", False, otlp_args(sys.argv[2], sys.argv[3], 10))
print(task.end(None, time.time_ns(), "complete", None, None), flush=True)
"""
# A CLI of one session, as the gate sees one (no shell, no Python by its
# name): it runs its hook per line it reads, the agent's own hook call too
# (a tool call of the session runs under it), and exits after SessionEnd.
FAKE_CLI = """
import ctypes, json, subprocess, sys
ctypes.CDLL(None).prctl(15, b"fakecli", 0, 0, 0)
hook, sid = sys.argv[1:-1], sys.argv[-1]
for line in sys.stdin:
    what, _, rest = line.strip().partition(" ")
    if what == "call":
        call_id, command = rest.split(" ", 1)
        doc = {"session_id": sid, "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": call_id}
    else:
        doc = {"session_id": sid, "hook_event_name": "SessionEnd", "reason": "other", "prompt_id": "p1"}
    done = subprocess.run(hook, input=json.dumps(doc).encode(), capture_output=True)
    print(done.returncode, done.stdout.decode().strip().replace(chr(10), " ") or "-", flush=True)
    if what == "end":
        break
"""


def test_a_session_the_gate_guards_ends_by_the_gates_word_not_the_agents(tmp_path: Path) -> None:
    """Issue 63: without the launcher, the agent (the OTLP token and its
    session id are its own) could end its own task, marked complete, to
    dodge a cancel. The gate keys the session at its first call, before
    answering: the agent's end is then a claim, and so is a session end the
    agent hands the gate itself while the session's CLI runs (the gate's
    proof waits for that CLI to exit); the task stays open, the cancel
    denies the next call, and the end the CLI's own ``SessionEnd`` brings
    as it exits is the one that counts, the claims kept beside it. Fails
    without the key: the forged end ends the task ``complete``."""
    from tests.cli.coding_harness import TOKEN, Serve, task_of

    def token_file(root: Path) -> list[str]:
        secrets_dir = _owned(root / "secrets", GATE, GATE, 0o700)
        path = secrets_dir / "otlp-token"
        path.write_text(TOKEN)
        os.chown(path, GATE, GATE)
        os.chmod(path, 0o600)
        return ["--otlp-token-file", str(path)]

    serve = Serve(tmp_path / "serve")
    sid = "5d1f4c2e-0b7a-4e55-9c3d-7a1e2b3c4d5e"
    task = task_of("claude-code", sid)
    try:
        # The look at the cancel may wait 5 s (the operator's --cancel-wait):
        # at its default 100 ms, a loaded machine's serve answers after the
        # call it was for, whose allow then stands (only the next is denied).
        with installed(ALLOW_LS, serve.base, "--cancel-wait", "5s", before=token_file) as install:
            hook = [SPANVISOR, "hook", "claude-code", "--gate", str(install.socket)]
            cli = subprocess.Popen(
                [*as_user(AGENT, (AGENTS,)), sys.executable, "-I", "-c", FAKE_CLI, *hook, sid],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=base_env(install.agent_home),
                cwd=str(install.agent_home),
            )
            assert cli.stdin is not None and cli.stdout is not None

            def said(line: str) -> str:
                cli.stdin.write(line + "\n")  # type: ignore[union-attr]
                cli.stdin.flush()  # type: ignore[union-attr]
                return cli.stdout.readline().strip()  # type: ignore[union-attr]

            def claims() -> float:
                return serve.pipeline.stats.value("claimed_ends_total")

            def duplicates() -> float:
                return serve.pipeline.stats.value("duplicate_spans_total")

            try:
                assert decision("claude-code", said("call t1 ls").split(" ", 1)[1]) == "allow"
                wait_until(lambda: serve.sink.for_task(task), 60, "the session's task, keyed by the gate")
                forged = subprocess.run(
                    [*as_user(AGENT, (AGENTS,)), sys.executable, "-I", "-c", FORGED_END, sid, serve.base, TOKEN],
                    capture_output=True,
                    text=True,
                    env=base_env(install.agent_home),
                    timeout=60,
                    check=False,
                )
                assert forged.stdout.strip() == "True", (forged.stdout, forged.stderr)  # serve took it: a claim
                wait_until(
                    lambda: any("without its starter's word" in str(c.task.message) for c in serve.checkpoints(task)),
                    60,
                    "the claim said on the task",
                )
                # The agent hands the gate a session end while the CLI runs: the gate's end, unproved.
                assert said("forge").startswith("0 ")
                # Sent unproved: a claim again (the same root end as the agent's: one of them is kept).
                wait_until(lambda: claims() + duplicates() >= 2, 60, "the gate's unproved end, a claim")
                assert list(install.gate_home.rglob("*.key")), "the session's key went with an end while its CLI ran"
                assert serve.finished(task) is None, "an end while the session's CLI ran ended the task"
                assert serve.cancel(task, "wrong branch")["outcome"] == "applied"
                assert decision("claude-code", said("call t2 ls").split(" ", 1)[1]) == "deny"
                assert said("end").startswith("0 ")
                assert cli.wait(60) == 0
            finally:
                if cli.poll() is None:
                    cli.kill()
                    cli.wait(10)
            done = wait_until(lambda: serve.finished(task), 60, "the gate's end of the task")
            assert done.task.status == "cancelled", done.task
            assert str(done.task.message).startswith("Cancelled by alice: wrong branch"), done.task.message
            # Nothing of the session is left in the gate's folder, its secret included.
            assert not list(install.gate_home.rglob("*.key")), list(install.gate_home.rglob("*.key"))
    finally:
        serve.close()


def test_a_repositorys_env_block_chooses_no_owner_and_no_repository_for_a_rule() -> None:
    """A rule allowing everything in a sandbox repository, or deploys for
    alice, matched what a repository's settings ``env`` block said of the
    task's repository and owner (``OTEL_RESOURCE_ATTRIBUTES``,
    ``SPANVISOR_TASK_OWNER``). The gate drops them: a rule on a fact it does
    not know is taken at its strictest."""
    from tests.gate.test_claimed_facts import HOSTILE, POLICY

    with installed(POLICY) as install:
        for command in ("rm -rf build", "deploy prod"):
            resource, owner = HOSTILE["OTEL_RESOURCE_ATTRIBUTES"], HOSTILE["SPANVISOR_TASK_OWNER"]
            code, out, err = install.hook(command, OTEL_RESOURCE_ATTRIBUTES=resource, SPANVISOR_TASK_OWNER=owner)
            assert (code, decision("claude-code", out)) == (0, "deny"), (command, code, out, err)


def _loopback_name() -> str | None:
    """This machine's name when it resolves to loopback (Debian's hosts
    file maps it to 127.0.1.1), else None."""
    name = socket.gethostname()
    try:
        found = {a[4][0] for a in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except OSError:
        return None
    return name if found and all(a.startswith("127.") for a in found) else None


@pytest.mark.parametrize(
    ("who", "groups", "serve_user", "by_name"),
    [
        (AGENT, (AGENTS,), None, False),
        # Not an agent, but not the account named --serve-user either.
        (65534, (), str(GATE), False),
        # The URL names the machine, which resolves to loopback.
        (AGENT, (AGENTS,), None, True),
    ],
    ids=["an-agent", "not-the-serve-user", "by-the-machines-name"],
)
def test_a_socket_on_serves_port_not_taken_for_serve_is_asked_nothing(
    who: int, groups: tuple[int, ...], serve_user: str | None, by_name: bool
) -> None:
    """``serve`` restarting, someone else listens on its port first and
    would answer as the control API does: an agent, or with
    ``--serve-user`` anyone but that account. The gate sends it nothing
    (not its token, not the call's question), so nothing it could answer
    counts: a call the policy asks about is denied as with ``serve``
    down."""
    from tests.receiver.test_first_start_token import SQUATTER

    host = _loopback_name() if by_name else "127.0.0.1"
    if host is None:
        pytest.skip("this machine's name does not resolve to loopback")
    squatter = subprocess.Popen(
        [*as_user(who, groups), sys.executable, "-I", "-c", SQUATTER],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        cwd="/",
    )
    try:
        assert squatter.stdout is not None
        url = f"http://{host}:{int(squatter.stdout.readline())}"

        def token_file(root: Path) -> list[str]:
            path = root / "control-token"
            path.write_text("the-gates-token\n")
            os.chown(path, GATE, GATE)
            os.chmod(path, 0o600)
            return ["--token-file", str(path), "--url", url, *(["--serve-user", serve_user] if serve_user else [])]

        with installed('default = "ask"\ntimeout = 5\n', url, before=token_file) as made:
            code, out, err = made.hook("rm -rf build")
            assert decision("claude-code", out) == "deny", (code, out, err)
            assert "not spanvisor serve" in out, out
    finally:
        squatter.kill()
        squatter.wait(10)
    assert squatter.stdout.read() == "", "the listener heard nothing"
