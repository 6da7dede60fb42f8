"""An orphan is lost, never complete (issue 64): a ``spanvisor run`` that
dies without an end (SIGKILL) leaves its task to liveness, which says the
stall first (``task_stalled``) and then finishes it ``lost``.

Real processes: a real ``spanvisor serve`` (short SPANVISOR_STALL_AFTER and
SPANVISOR_LOST_AFTER), the real launcher, and a stand-in ``claude -p`` that
exports its records with the OpenTelemetry SDK as Claude Code does. What
serve said is read from its event stream (``GET /v1/events`` on the admin
port: every event in order, with its body) and from the control API. The paths:

* the launcher and its CLI are SIGKILLed together;
* the launcher alone is SIGKILLed: its CLI (in a process group of its own)
  goes on speaking, then prints a success result and runs its ``Stop`` and
  ``SessionEnd`` hooks (``spanvisor hook claude-code``, as Claude Code does
  at its exit) and exits 0. Nothing but the launcher ends a launched task:
  it stays to liveness, and is lost, never ``complete``;
* the task's agent has a stall time longer than the lost time: it is still
  said stalled, just before it is lost;
* a launcher given the task id of a run that ended: its session is a new
  run of the task, under a root of its own (``spanvisor.task.run``), so it
  is tracked, and its orphan is stalled then lost, never the old run's
  ``complete`` read again. The launcher says it is a new run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.receiver.serve_proc import ServeProcess, console_env
from tests.waiting import wait_until

# Real processes: serve, two launchers, their CLIs (each imports the OTel SDK),
# and the liveness windows below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout_s(300)]

STALL_AFTER_S = 3
LOST_AFTER_S = 6
# An agent whose stall time is longer than the lost time: its orphan is still
# said stalled before it is lost (in the same check).
PATIENT_AGENT = "patient-bot"
PATIENT_STALL_AFTER_S = 60
# How long a test waits for what serve says: far above the windows, for a loaded machine.
WAIT_S = 120.0

# A stand-in for ``claude -p`` under the launcher: its records go where the
# launcher's settings say (the real OTel SDK, from the environment). It says
# it is ready (its pid in FAKE_DIR/ready), then speaks every half second
# until FAKE_DIR/exit appears; then, as Claude Code does at its end, it
# prints a success result (to a launcher that may be gone), runs its Stop and
# SessionEnd hooks with the environment the launcher gave it, and exits 0.
FAKE_CLI = """
import json, os, subprocess, sys, time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

here = Path(os.environ["FAKE_DIR"])
provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
logger = provider.get_logger("com.anthropic.claude_code.events")
common = {"session.id": "orphan-session", "prompt.id": "p-1"}


def say(name, **attrs):
    logger.emit(body="claude_code." + name, attributes={**common, "event.name": name, **attrs})


def out(doc):
    try:
        print(json.dumps(doc), flush=True)
    except (BrokenPipeError, OSError):
        pass  # the launcher is gone


def hook(event, **extra):
    doc = {"session_id": "orphan-session", "hook_event_name": event, "prompt_id": "p-1", "cwd": os.getcwd(), **extra}
    ran = subprocess.run(
        [sys.executable, "-m", "spanvisor.cli", "hook", "claude-code"],
        input=json.dumps(doc).encode(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
    )
    return ran.returncode


say("user_prompt", prompt_length=13)
out({"type": "system", "subtype": "init", "session_id": "orphan-session"})
(here / "ready").write_text(str(os.getpid()))
while not (here / "exit").exists():
    say("hook_execution_start")
    time.sleep(0.5)
out({"type": "result", "subtype": "success", "is_error": False, "result": "All done."})
provider.shutdown()
codes = [hook("Stop"), hook("SessionEnd", reason="other")]
(here / "ended").write_text(json.dumps(codes))
"""


@dataclass
class Stream:
    """Every event serve's stream said, as (kind, body), in order."""

    frames: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return [(k, d) for k, d in self.frames if d.get("task_id") == task_id]

    def kinds(self, task_id: str) -> list[str]:
        return [k for k, _ in self.of(task_id)]


@dataclass
class Served:
    serve: ServeProcess
    stream: Stream

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.serve.http}"

    def control(self, task_id: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.base}/v1/control/tasks/{task_id}", timeout=20) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
                return doc
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise


def _follow(url: str, stream: Stream, connected: threading.Event) -> None:
    """Read the SSE stream into ``stream`` until serve closes it."""

    def connect() -> Any:
        try:
            return urllib.request.urlopen(url, timeout=600)
        except (urllib.error.URLError, OSError):
            return None  # not serving it yet (503)

    resp = wait_until(connect, 60, "serve's event stream")
    connected.set()
    kind = ""
    try:
        for raw in resp:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:") and kind:
                doc = json.loads(line[5:])
                with stream.lock:
                    stream.frames.append((kind, doc))
    except (OSError, ValueError):
        return  # serve stopped


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("serve-orphan")
    env = console_env(
        data,
        SPANVISOR_STALL_AFTER=f"{STALL_AFTER_S}s",
        SPANVISOR_LOST_AFTER=f"{LOST_AFTER_S}s",
        SPANVISOR_HEARTBEAT="1s",
        SPANVISOR_STALL_AFTER_BY_AGENT=f"{PATIENT_AGENT}={PATIENT_STALL_AFTER_S}",
    )
    env["SPANVISOR_SINKS"] = "console,stream"  # the stream: where a stall is said
    serve = ServeProcess(data, env)
    stream = Stream()
    connected = threading.Event()
    reader = threading.Thread(
        target=_follow, args=(f"http://127.0.0.1:{serve.admin}/v1/events", stream, connected), daemon=True
    )
    reader.start()
    try:
        # The stream records only once someone reads it: no launcher before.
        wait_until(connected.is_set, 60, "the event stream's reader")
        yield Served(serve, stream)
    finally:
        serve.stop()
        reader.join(10)


@dataclass
class Session:
    task_id: str
    folder: Path
    launcher: subprocess.Popen[bytes]

    def said(self) -> str:
        """What the launcher said on stderr so far."""
        return (self.folder / "launcher.err").read_text(errors="replace")

    @property
    def cli_pid(self) -> int:
        return int((self.folder / "ready").read_text())

    def stop(self) -> None:
        (self.folder / "exit").write_text("1")
        if self.launcher.poll() is None:
            self.launcher.kill()
        self.launcher.wait(30)
        if (self.folder / "ready").exists():
            try:
                os.kill(self.cli_pid, signal.SIGKILL)
            except OSError:
                pass  # it ended


def _launch(served: Served, tmp_path: Path, *options: str, task_id: str | None = None) -> Session:
    """``spanvisor run -- claude -p …`` with the stand-in CLI, started and
    heard of by serve (its task started on the stream)."""
    folder = tmp_path / "cli"
    bin_dir = tmp_path / "bin"
    for d in (folder, bin_dir):
        d.mkdir(parents=True)
    script = tmp_path / "fake_cli.py"
    script.write_text(FAKE_CLI)
    exe = bin_dir / "claude"  # the launcher knows the CLI by its name
    exe.write_text(f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(script)!r}, run_name='__main__')\n")
    exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_", "SLACK_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(tmp_path / "data"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        SPANVISOR_HEARTBEAT="1s",  # the launcher's: far inside the stall time while it lives
        FAKE_DIR=str(folder),
    )
    task_id = task_id or f"orphan-{uuid.uuid4().hex[:10]}"
    argv = [sys.executable, "-m", "spanvisor.cli", "run", "--task-id", task_id, "--endpoint", served.base]
    argv += [*options, "--", str(exe), "-p", "fix the tests"]
    with (folder / "launcher.err").open("wb") as err:
        launcher = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
    session = Session(task_id, folder, launcher)
    try:
        wait_until((folder / "ready").exists, WAIT_S, "the CLI to start")
        wait_until(lambda: "task_started" in served.stream.kinds(task_id), WAIT_S, "the task to start in serve")
    except BaseException:
        session.stop()
        raise
    return session


def _lost(served: Served, task_id: str) -> list[str]:
    """Wait for the task's end; check it is ``lost``, said stalled first,
    and never ``complete``: its kinds, for the caller."""
    wait_until(lambda: "task_finished" in served.stream.kinds(task_id), WAIT_S, "the orphan's end")
    said = served.stream.of(task_id)
    kinds = [k for k, _ in said]
    ends = [d for k, d in said if k == "task_finished"]
    assert [d["outcome"] for d in ends] == ["lost"], kinds
    assert ends[0]["error_type"] == "SpanvisorLost" and ends[0]["task"]["stalled"] is True, ends[0]
    # The stall is said before the loss: the last stall after any resume, and before the end.
    end = kinds.index("task_finished")
    last_stall = max((i for i, k in enumerate(kinds) if k == "task_stalled"), default=-1)
    last_resume = max((i for i, k in enumerate(kinds) if k == "task_resumed"), default=-1)
    assert last_resume < last_stall < end, kinds
    assert all(d["task"]["status"] != "complete" for _, d in said), kinds
    doc = served.control(task_id)
    assert doc is not None and (doc["state"], doc["status"]) == ("lost", "lost"), doc
    return kinds


def test_a_launcher_sigkilled_with_its_cli_leaves_its_task_stalled_then_lost(served: Served, tmp_path: Path) -> None:
    session = _launch(served, tmp_path)
    try:
        session.launcher.kill()  # no goodbye: nothing ends the task's root
        session.launcher.wait(30)
        os.killpg(session.cli_pid, signal.SIGKILL)  # its own process group
        _lost(served, session.task_id)
    finally:
        session.stop()


def test_a_launcher_sigkilled_while_its_cli_runs_on_and_exits_leaves_its_task_lost_not_complete(
    served: Served, tmp_path: Path
) -> None:
    session = _launch(served, tmp_path)
    try:
        session.launcher.kill()
        session.launcher.wait(30)
        # The CLI lives on without its launcher and goes on speaking: the task is open.
        doc = served.control(session.task_id)
        assert doc is not None and doc["state"] == "running", doc
        # Then it ends as Claude Code does: a success result, its Stop and SessionEnd hooks, exit 0.
        (session.folder / "exit").write_text("1")
        wait_until((session.folder / "ended").exists, WAIT_S, "the CLI to run its end hooks and exit")
        assert json.loads((session.folder / "ended").read_text()) == [0, 0], "both hooks answered"
        _lost(served, session.task_id)
    finally:
        session.stop()


def test_an_orphan_of_an_agent_whose_stall_time_is_past_the_lost_time_is_said_stalled_before_it_is_lost(
    served: Served, tmp_path: Path
) -> None:
    session = _launch(served, tmp_path, "--agent", PATIENT_AGENT)
    try:
        session.launcher.kill()
        session.launcher.wait(30)
        os.killpg(session.cli_pid, signal.SIGKILL)
        _lost(served, session.task_id)
    finally:
        session.stop()


def test_an_orphan_under_a_task_id_an_ended_run_had_is_stalled_then_lost_not_the_old_runs_complete(
    served: Served, tmp_path: Path
) -> None:
    first = _launch(served, tmp_path / "first")
    try:
        (first.folder / "exit").write_text("1")  # the CLI ends well: the launcher ends the task complete
        assert first.launcher.wait(WAIT_S) == 0
        wait_until(lambda: "task_finished" in served.stream.kinds(first.task_id), WAIT_S, "the first run's end")
    finally:
        first.stop()
    done = len(served.stream.of(first.task_id))
    again = _launch(served, tmp_path / "again", task_id=first.task_id)
    try:
        again.launcher.kill()
        again.launcher.wait(30)
        os.killpg(again.cli_pid, signal.SIGKILL)
        # Bounded well past the lost time (LOST_AFTER_S): before runs, the orphan was never heard of, let alone lost.
        wait_until(
            lambda: "task_finished" in [k for k, _ in served.stream.of(first.task_id)[done:]],
            5 * LOST_AFTER_S,
            "the second run's end",
        )
        said = served.stream.of(first.task_id)[done:]
        kinds = [k for k, _ in said]
        assert [d["outcome"] for k, d in said if k == "task_finished"] == ["lost"], kinds
        assert "task_stalled" in kinds[: kinds.index("task_finished")], kinds
    finally:
        again.stop()


def test_a_launcher_given_the_task_id_of_a_run_that_ended_says_the_session_is_a_new_run(
    served: Served, tmp_path: Path
) -> None:
    """The person who reuses a task id is told at once, by the launcher, that
    the session is a new run of the task; the control API shows it running."""
    first = _launch(served, tmp_path / "first")
    try:
        (first.folder / "exit").write_text("1")
        assert first.launcher.wait(WAIT_S) == 0
        wait_until(lambda: "task_finished" in served.stream.kinds(first.task_id), WAIT_S, "the first run's end")
        assert "already ran" not in first.said(), first.said()
    finally:
        first.stop()
    again = _launch(served, tmp_path / "again", task_id=first.task_id)
    try:
        said = f"task {first.task_id} already ran and ended (complete)"
        wait_until(lambda: said in again.said(), WAIT_S, "the launcher to say the task id names an ended run")
        assert "this session is a new run of it" in again.said(), again.said()
        assert "give it a new --task-id" not in again.said(), again.said()
        wait_until(lambda: (served.control(first.task_id) or {}).get("state") == "running", WAIT_S, "the new run")
    finally:
        again.stop()
