"""``spanvisor run -- claude -p "…"`` (or ``codex exec …``, ``gemini …``,
``qwen -p …``, ``copilot -p …``, ``opencode run …``, ``cline …``):
a coding-agent session as a task whose end is never missed.

The launcher gives the session a fresh task id and a name (``--name``, else
the prompt, clipped and redacted); a task id given with ``--task-id`` is
looked up first (one request to the control API, at most :data:`LOOK_S`)
and, when a run of it ended, this session is made a new run of it, with a
run of its own (``spanvisor.task.run`` in the CLI's resource, and the
hooks its local gate answers: its root is derived from the task id and the
run, issue 64). It points the CLI's telemetry at spanvisor
(``--endpoint`` / ``SPANVISOR_OTLP_ENDPOINT``, or a Collector) with the
task's id and name in ``OTEL_RESOURCE_ATTRIBUTES``, asks for tool details
(``--no-tool-details`` does not) and a log export each second where the CLI
lets it be set, and starts the CLI at once, in a process group of its own
(:mod:`spanvisor.launcher.start`: nothing heavy is imported before). Then,
while the CLI runs: it opens the task with an ``agent.task.start`` record,
starts its local gate, sends heartbeats, forwards SIGINT, SIGTERM and SIGHUP
to the CLI's group, follows the task for a cancel and then stops the CLI
(:mod:`spanvisor.launcher.stop`). At the CLI's exit it ends the task's root
span: complete, error or cancelled, read per CLI
(:func:`spanvisor.launcher.results.end_of`), in one attempt; an end the
receiver cannot take waits in the gate's spool for the next hook or
launcher, said once. It exits with the CLI's exit code (128 + N for a CLI
killed by signal N). Nothing spanvisor cannot send stops the CLI: it is
said once on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spanvisor.clis import registry
from spanvisor.gate import otlp, servetoken
from spanvisor.gate import session as gs
from spanvisor.gate.notes import spool_dir
from spanvisor.launcher import relay as run_relay
from spanvisor.launcher import start as rs
from spanvisor.launcher.credential import SessionSecret, keep_from_the_session
from spanvisor.launcher.procs import Adoption
from spanvisor.launcher.relay import Relay
from spanvisor.launcher.repo import head_commit, place_of
from spanvisor.launcher.signals import Signals
from spanvisor.launcher.start import add_arguments, cli_of, prompt_of, task_name, telemetry

if TYPE_CHECKING:
    from spanvisor.config import Config
    from spanvisor.launcher.records import Records
    from spanvisor.launcher.results import ResultReader
    from spanvisor.launcher.stop import Stopper

ENV_LOCAL_GATE = "SPANVISOR_LOCAL_GATE"
# spanvisor.gate.ENV_SOCKET (not imported before the CLI starts: its socket module is 10 ms).
ENV_SOCKET = "SPANVISOR_GATE_SOCKET"
# How long the launcher's end may wait on a receiver that does not answer:
# its records, then the task's end (which then waits in the spool).
CLOSE_S = 2.0
# Once the CLI has exited, how long its output may stay open before what
# holds it (a process the session detached) is stopped.
DRAIN_S = 1.0
END_S = 3.0
# How long a receiver that took the session's records gets to take its end.
END_RETRY_S = 10.0
# How long the CLI's start may wait to learn whether a --task-id names a run that ended.
LOOK_S = 2.0
# How long the task's start record may hold the CLI's start (a loopback
# receiver takes it in milliseconds; a down one refuses at once).
ANNOUNCE_S = 0.5
# spanvisor.control.client's (not imported before the CLI starts: 100 ms).
ENV_CONTROL_URL, ENV_CONTROL_TOKEN = "SPANVISOR_CONTROL_URL", "SPANVISOR_CONTROL_TOKEN"


def main(argv: Sequence[str]) -> int:
    """``spanvisor run …`` as the console script starts it: straight here,
    before the full CLI (its parser, settings and plugins) is loaded."""
    p = argparse.ArgumentParser(prog="spanvisor run", description=HELP)
    add_arguments(p)
    return handler(p.parse_args(list(argv)), None)


def handler(args: argparse.Namespace, config: Config | None) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        rs.said("give the command after --, e.g. spanvisor run -- claude -p 'fix the tests'")
        return 2
    cli = args.cli or cli_of(argv[0])
    if cli is None:
        rs.said(
            f"{os.path.basename(argv[0])!r} is not the command of a coding-agent CLI spanvisor knows "
            f"({', '.join(registry.NAMES)}); say which with --cli"
        )
        return 2
    endpoint = gs.endpoint_from(args.endpoint)
    if not args.token:
        # The local serve's own token (its data dir's serve-token), for a
        # loopback endpoint only: what the CLI, its hooks and this launcher send.
        args.token = servetoken.for_url(endpoint)
    task_id = args.task_id or f"{cli}-{os.urandom(8).hex()}"
    name = task_name(args.name, argv, cli)
    env = os.environ
    # One agent for the task, whichever sends: the CLI's records (its
    # resource), the hooks' and the launcher's own.
    agent = gs.task_agent(
        {**env, gs.ENV_TASK_AGENT: args.agent or env.get(gs.ENV_TASK_AGENT, "")}, registry.need(cli).service
    )
    # A task id given again after its run ended: this session is a new run of
    # it, under a root of its own (before, it was that ended run to serve).
    ended = _ended(task_id, endpoint, args.token) if args.task_id else None
    # A CLI whose calls the launcher reports itself (its adapter's stream): its
    # records name the task id alone, so its sessions get no run of their own
    # (a reused task id is said, not made a new run).
    run = os.urandom(16).hex() if ended is not None and registry.need(cli).stream is None else None
    attrs = {gs.RESOURCE_TASK_ID: task_id, "spanvisor.task.name": name}
    if run is not None:
        attrs[gs.RESOURCE_TASK_RUN] = run
    # The user's resource, less a run it may hold (a launcher's inside a launched session).
    users = {k: v for k, v in gs.resource_attributes(env).items() if k != gs.RESOURCE_TASK_RUN}
    resource = gs.encode_resource(
        {**users, **attrs, **({gs.AGENT_KEYS[0]: agent} if agent != registry.need(cli).service else {})}
    )
    # The CLI's telemetry goes through the launcher (launcher/relay.py): kept
    # while the receiver is away, and the session's token never in the CLI's hands.
    relay = run_relay.listen(endpoint, args.token, spool_dir(env))  # served once the CLI runs
    aimed, holds = (relay.url, relay.secret) if relay is not None else (endpoint, args.token)
    child_argv, child_env = telemetry(cli, argv, env, aimed, holds, resource, not args.no_tool_details)
    # The task's repository and branch, for display and routing (never the gate's: launcher/repo.py).
    place = place_of(os.getcwd(), str(users.get("agent.repo") or ""))
    base = None if getattr(args, "no_diff", False) else head_commit(os.getcwd())  # what its diff is against
    child_env[gs.ENV_ENDPOINT] = endpoint  # where the CLI's hooks send their requests
    # The task, and who may not approve its requests, for the hooks: in
    # SPANVISOR_* variables, which Claude Code passes on (it drops OTEL_*).
    child_env[gs.ENV_TASK_ID] = task_id
    if run is not None:
        # The hooks this process answers (its local gate) are of this run:
        # Claude Code gives them no OTEL_* variable, so not the resource's.
        gs.join_run(task_id, run)
    child_env[gs.ENV_TASK_AGENT] = agent
    if (asker := gs.task_owner(env)) is not None:
        child_env[gs.ENV_TASK_OWNER] = asker
    # The session's hooks ask this process (a warm gate) over a private
    # socket, which comes up once the CLI runs (rs.Reserved); a CLI's http
    # hook (SPANVISOR_LOCAL_GATE=http, its adapter's) needs its listener first.
    gate, reserved = None, None
    # What its hooks are decided under, whatever their environment says: the
    # task, agent and owner, and the resource naming the task and its repository.
    said_by_launcher = (gs.ENV_TASK_ID, gs.ENV_TASK_AGENT, gs.ENV_TASK_OWNER, "OTEL_RESOURCE_ATTRIBUTES")
    identity = {k: child_env[k] for k in said_by_launcher if k in child_env}
    if env.get(ENV_LOCAL_GATE) == "http" and registry.need(cli).http_hooks:
        gate = _local_gate(identity)
        if gate is not None:
            child_env[ENV_SOCKET] = gate.path
            gate.client_path(child_env)
            child_argv = gate.for_http(registry.need(cli), child_argv, child_env)
    elif env.get(ENV_LOCAL_GATE) != "off":
        try:
            reserved = rs.Reserved(env)
            reserved.give(child_env, ENV_SOCKET)
        except OSError as exc:  # the hooks decide by themselves, as without a launcher
            rs.said(f"no local gate ({exc.strerror or exc}); each hook decides by itself")
    # What the CLI's adapter does before it starts (Codex: its hooks' trust,
    # clis/codex/trust.py), and a warning for the task when the gate may not run.
    child_argv, prepared_said, warning = registry.need(cli).prepare_run(child_argv, child_env, os.getcwd())
    if prepared_said:
        rs.said(prepared_said)
    gate_marker: str | None = None
    if args.gate:
        from spanvisor.launcher import gate_setup as run_more

        folder = reserved.dir if reserved is not None else None
        gated, gate_said, gate_marker = run_more.gate(cli, child_argv, child_env, folder)
        if gate_said:
            rs.said(gate_said)
        if gated is None:  # no gate can be given: the CLI is not started ungated
            for held in (gate, reserved):
                if held is not None:
                    held.close()
            if relay is not None:
                relay.close(0)
            return 2
        child_argv = gated
    child_argv, mode = rs.plan(cli, child_argv)
    started = time.time_ns()
    # The session's secret: only the launcher's end of the task ends it
    # (launcher/credential.py), announced before the CLI can say anything.
    secret = SessionSecret()
    keep_from_the_session()
    announced = _announce(task_id, run, cli, endpoint, args.token, name, agent, started, secret.key, place)
    rs.said(f"task {task_id} ({name}) → {endpoint}")
    if ended is not None:
        rs.said(_reused(task_id, ended, endpoint, cli, run))
    # A system gate its hooks go to files their calls under this task only
    # when this process tells it so (launcher/system_gate.py): before the CLI starts.
    from spanvisor.launcher import system_gate

    told, untold = system_gate.tell(
        system_gate.named(cli, env, os.getcwd()), task_id, agent, run, child_env.get(gs.ENV_TASK_OWNER)
    )
    for line in untold:
        rs.said(line)
    # What the session detaches stays under the launcher, to be stopped with it (run_procs.py).
    adoption = Adoption.begin()
    # Signals to the launcher are the CLI's from its start: one that comes
    # while the launcher still sets up (its relay, its session) is held and
    # passed on, never lost to Python's default (a SIGINT raised as
    # KeyboardInterrupt there left the CLI running and the launcher waiting).
    signals = Signals()
    try:
        proc = rs.spawn(child_argv, child_env, mode != "passthrough")
    except OSError as exc:
        signals.restore()
        adoption.end()
        rs.said(f"cannot start {child_argv[0]}: {exc.strerror or exc}")
        for held in (gate, reserved):
            if held is not None:
                held.close()
        if relay is not None:
            relay.close(0)
        for conn in told:
            conn.close()
        return 127
    signals.started(proc)
    if relay is not None:
        relay.start()
    session = _Session(proc, cli, task_id, name, endpoint, args, started, signals)
    session.secret, session.announced, session.relay = secret, announced, relay
    session.run_of_task = run
    session.agent = agent
    session.place, session.base = place, base
    session.adoption = adoption
    session.gate_marker = gate_marker  # the file the gate writes when it loads, under --gate
    session.identity = identity
    try:
        return session.run(mode, gate, reserved, config, warning)
    finally:
        adoption.end()
        rs.take_terminal_back(proc)
        for conn in told:
            conn.close()  # the session is over for the system gate


class _Session:
    """The launcher's part once the CLI runs."""

    def __init__(
        self,
        proc: Any,
        cli: str,
        task_id: str,
        name: str,
        endpoint: str,
        args: argparse.Namespace,
        started: int,
        signals: Signals | None = None,
    ) -> None:
        self.proc, self.cli, self.task_id, self.name, self.endpoint = proc, cli, task_id, name, endpoint
        self.args, self.started = args, started
        self.agent = registry.need(cli).service  # the task's agent (--agent, the resource's, else the CLI's)
        self.place: dict[str, str] = {}  # the task's agent.repo and agent.branch (launcher/repo.py)
        self.base: str | None = None  # the commit the session started on (launcher/diff.py)
        self.run_of_task: str | None = None  # this session's run of the task, when it has one
        self.gate_marker: str | None = None
        self.identity: dict[str, str] = {}  # the task, agent and owner its hooks are decided under (LocalGate)
        self.stopper: Stopper | None = None
        self.adoption = Adoption()  # the session's orphans, when the launcher adopts them
        self.secret = SessionSecret()  # the one handler() announced, set there
        self.announced = False  # whether its start record went before the CLI started
        self.relay: Relay | None = None  # the CLI's telemetry, through this process
        # Signals to the launcher reach the CLI's group from its start (launcher/signals.py).
        self.signals = signals or Signals()
        if self.signals.proc is None:
            self.signals.started(proc)
        self.forwarded = self.signals.got  # every signal the launcher got, in order

    def run(
        self, mode: rs.Mode, gate: Any, reserved: rs.Reserved | None, config: Config | None, warning: str | None
    ) -> int:
        from spanvisor.launcher import stream as run_stream
        from spanvisor.launcher.records import Records
        from spanvisor.launcher.results import ResultReader
        from spanvisor.launcher.stop import Reaper, Stopper
        from spanvisor.spans import conventions as cv

        service = registry.need(self.cli).service
        # OpenCode's and Cline's calls and steps, read from what they print (run_stream.py).
        argv = list(self.proc.args)
        report = run_stream.start(
            self.cli, service, self.task_id, self.name, self.endpoint, self.args.token, argv, self.agent
        )
        if report is not None:
            report.gate_marker = self.gate_marker
        records = Records(self.key, self.endpoint, self.args.token, self.task_id)
        if not self.announced:  # the receiver could not take it before the CLI started: as soon as it can
            opening = {cv.TASK_NAME: self.name, cv.AGENT_ID: self.agent, cv.SESSION_KEY: self.secret.key}
            opening.update(self.place)
            records.say(cv.LIVE_TASK_START, opening, self.started)
        if warning:  # said on the task, not only here (Codex may skip every hook silently)
            records.say(cv.EVENT_CHECKPOINT, {cv.MESSAGE: warning})
        self.stopper = Stopper(self.proc, self.adoption)
        self.signals.stopping(self.stopper)  # and one that came before it starts its steps now
        reaper = Reaper(self.adoption, self.proc.pid).start() if self.adoption.on else None
        if reserved is not None:
            gate = _local_gate(self.identity, reserved)
        beat = _beat(records, config)
        diff = self._diff()
        watch = self._follow(records)
        reading = ResultReader(
            mode, tap=report, on_pull_request=lambda url: records.say(cv.LIVE_TASK_UPDATE, {cv.PULL_REQUEST: url})
        )
        drained = threading.Event()
        if self.adoption.on:
            self.stopper.sweep_once_ended(drained, DRAIN_S)
        try:
            _read(self.proc, reading)
            drained.set()
            code: int = self.proc.wait()
        finally:
            self.signals.restore()
            if beat is not None:
                beat.set()
            if watch is not None:
                watch.close()
            for held in (gate, reserved):
                if held is not None:
                    held.close()
        run_stream.finish(report, within_s=min(self.args.timeout, CLOSE_S))
        if diff is not None:
            diff.close(min(self.args.timeout, CLOSE_S))  # the work as it ended, before the end
        self._end(records, code, reading)
        # What the CLI left running ends with the session (once its end is sent).
        if left := self.stopper.sweep() + self.stopper.swept:
            rs.said(f"stopped {left} process{'es' if left != 1 else ''} the session left running")
        if reaper is not None:
            reaper.close()
        return 128 - code if code < 0 else registry.need(self.cli).exit_status(reading, code)

    def _diff(self) -> Any:
        """The session's diff watcher (launcher/diff.py), unless --no-diff
        or its folder is in no repository."""
        if getattr(self.args, "no_diff", False) or otlp.REPO not in self.place:
            return None
        from spanvisor.launcher.diff import DiffWatcher

        watcher = DiffWatcher(
            os.getcwd(), self.key, self.endpoint, self.args.token, self.task_id, self.base, self.place.get(otlp.BRANCH)
        )
        return watcher.start()

    @property
    def key(self) -> gs.TaskKey:
        """The task as its hooks name it: its id, in this session's run."""
        return gs.TaskKey(gs.launched_key(self.task_id, self.run_of_task), registry.need(self.cli).service, True)

    def _follow(self, records: Records) -> Any:
        """A cancel of this run of the task stops the CLI (run_stop.py)."""
        from spanvisor.control.client import ENV_URL, token_from_env
        from spanvisor.events import Decision, run_id_of
        from spanvisor.launcher.stop import CancelWatch, cancelled_text
        from spanvisor.spans import conventions as cv

        stopper = self.stopper
        assert stopper is not None

        def cancel(d: Decision) -> None:
            if stopper.stop(cancelled_text(d), d):
                said = f"⏹ {cancelled_text(d)}: spanvisor run is stopping {registry.need(self.cli).title}"
                records.say(cv.EVENT_CHECKPOINT, {cv.MESSAGE: said})
                rs.said(f"{cancelled_text(d)}; stopping {self.proc.args[0]}")

        url = os.environ.get(ENV_URL) or self.endpoint
        # The token as given: the watch's client asks where it may go at each request.
        watch = CancelWatch(self.task_id, run_id_of(*self.key.ids), url, token_from_env() or self.args.token, cancel)
        watch.start()
        return watch

    def _end(self, records: Records, code: int, reading: ResultReader) -> None:
        """End the task: once, at once; an end the receiver cannot take now
        waits in the gate's spool (the next hook or launcher sends it)."""
        from spanvisor.gate import notes
        from spanvisor.hook import task as ct
        from spanvisor.launcher.results import end_of, with_results
        from spanvisor.launcher.stop import cancelled_text

        if self.relay is not None:
            # The CLI has exited: all it exported was answered. What the
            # receiver has not taken yet goes first (the end comes last).
            kept = self.relay.close(within_s=min(self.args.timeout, CLOSE_S))
            if kept:
                rs.said(
                    f"{kept} of the CLI's exports wait in {self.relay.dir} for the next launcher to {self.endpoint}"
                )
            if (said := self.relay.said()) is not None:
                rs.said(said)
        # None of its records is in flight after this: the end never overtakes one.
        left = records.close(within_s=min(self.args.timeout, CLOSE_S))
        reachable = not records.said_away or left == 0
        if reachable:
            # The hooks' notes that could not go at once, the receiver permitting.
            _quietly(lambda: notes.deliver(token=self.args.token) >= 0)
        stopper = self.stopper
        if stopper is not None and stopper.decision is not None:
            # Whatever the CLI made of the signals: a person cancelled it.
            status, error, message = "cancelled", None, f"{cancelled_text(stopper.decision)} · stopped by spanvisor run"
        else:
            sent = self.forwarded[0] if self.forwarded else (stopper.last_signal if stopper is not None else None)
            status, error, message = end_of(self.cli, os.path.basename(self.proc.args[0]), code, reading, sent)
        target = ct.otlp_args(self.endpoint, self.args.token, min(self.args.timeout, END_S))
        # Its root in this session's run (gs.join_run: SessionTask derives the run's ids).
        task = ct.SessionTask(self.task_id, registry.need(self.cli).service, True, target, self.agent)
        request = task.end_request(self.name, self.started, status, error, message, self.secret.proof)
        request = with_results(request, reading)  # its pull request too: no record reaches a task that ended
        if reachable and _send_end(task, request):
            if left or records.dropped:
                rs.said(f"{left + records.dropped} of the launcher's records were not sent")
            return
        kept = _quietly(lambda: notes.write(task.end_note(request)))
        what = f"the task's end ({status})" + (
            f" and {left + records.dropped} records" if left or records.dropped else ""
        )
        later = (
            f"waits in {notes.spool_dir()} for the next hook or launcher" if kept else "is lost: liveness ends the task"
        )
        rs.said(f"{self.endpoint} did not take {what}; it {later}")


def _ended(task_id: str, endpoint: str, token: str | None) -> str | None:
    """How the run of ``task_id`` a launcher without a run would share with
    this session ended (its status), if it ended; None when it did not, is
    unknown, or the control API does not answer within :data:`LOOK_S`. One
    ``GET /v1/control/tasks/<id>?run=<run id>``, standard library only: the
    CLI's start waits for it (only when ``--task-id`` is given)."""
    import json
    import urllib.parse
    import urllib.request

    from spanvisor.gate.taskids import launcher_task_ids
    from spanvisor.ids import run_id_of

    url = (os.environ.get(ENV_CONTROL_URL) or endpoint).rstrip("/")
    sending = servetoken.bearer(url, os.environ.get(ENV_CONTROL_TOKEN) or token)
    if sending.refused:  # not this user's serve: no answer to read
        return None
    auth = {"Authorization": f"Bearer {sending.token}"} if sending.token else {}
    query = urllib.parse.urlencode({"run": run_id_of(*launcher_task_ids(task_id))})
    req = urllib.request.Request(
        f"{url}/v1/control/tasks/{urllib.parse.quote(task_id, safe='')}?{query}",
        headers={"Accept": "application/json", **auth},
    )
    # Loopback never goes through a proxy the environment names (nor its token).
    direct = servetoken.is_loopback(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if direct else urllib.request.build_opener()
    try:
        with opener.open(req, timeout=LOOK_S) as resp:
            doc = json.loads(resp.read(1 << 20))
    except Exception:
        return None  # no answer to read (a 404: no such run): this session is that run, as ever
    state = doc.get("state") if isinstance(doc, dict) else None
    if state not in ("finished", "failed", "lost"):
        return None
    status = doc.get("status")
    return status if isinstance(status, str) and status else str(state)


def _reused(task_id: str, ended: str, endpoint: str, cli: str, run: str | None) -> str:
    """What the launcher says of a ``--task-id`` whose run ended."""
    said = f"task {task_id} already ran and ended ({ended}) at {endpoint}"
    if run is not None:
        return f"{said}: this session is a new run of it"
    return (
        f"{said}: {_title(cli)}'s records name the task id alone, so this session has that run's trace "
        "and root: what it sends is read as late and it is not tracked (nor stalled or lost should the launcher "
        "die); give it a new --task-id"
    )


def _announce(
    task_id: str,
    run: str | None,
    cli: str,
    endpoint: str,
    token: str | None,
    name: str,
    agent: str,
    started: int,
    key: str,
    place: Mapping[str, str] | None = None,
) -> bool:
    """The task's start record, naming the session's key, sent before the
    CLI starts (so the first word on the task is the launcher's), within
    :data:`ANNOUNCE_S`: False when the receiver did not take it then (the
    session's records then send it as soon as they can)."""

    trace_hex, span_hex = gs.TaskKey(gs.launched_key(task_id, run), registry.need(cli).service, True).ids
    attrs = {otlp.TASK_ID: task_id, otlp.TASK_NAME: name, otlp.AGENT_ID: agent, otlp.SESSION_KEY: key}
    attrs.update(place or {})  # the task's agent.repo and agent.branch
    body = otlp.encode(registry.need(cli).service, trace_hex, span_hex, [(otlp.LIVE_TASK_START, attrs, started)])
    return _quietly(lambda: otlp.post(endpoint, token, body, ANNOUNCE_S))


def _send_end(task: Any, request: Any) -> bool:
    """The end, to a receiver that took the session's records: a busy one
    (a 503, a slow answer) gets a few more tries, within :data:`END_RETRY_S`,
    before the end waits in the spool (a down one was seen already: one try)."""
    import time

    deadline = time.monotonic() + END_RETRY_S
    pause = 0.25
    while True:
        if _quietly(lambda: task.send_end(request)):
            return True
        if time.monotonic() + pause >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _read(proc: Any, reading: ResultReader) -> None:
    if proc.stdout is None:
        return
    for line in proc.stdout:
        shown = reading.line(line)
        if shown:
            sys.stdout.write(shown)
            sys.stdout.flush()
    reading.finish()


def _beat(records: Records, config: Config | None) -> Any:
    """Heartbeats while the CLI runs (``SPANVISOR_HEARTBEAT``): the task
    stays live when the CLI says nothing for a while (a long tool call), and
    stalls only if the launcher dies. The event that stops them, or None."""

    from spanvisor.spans import conventions as cv

    if config is None:
        from spanvisor.config import Config, ConfigError

        try:
            config = Config.load()
        except ConfigError as exc:
            rs.said(f"configuration error: {exc}; no heartbeats")
            return None
    every = float(config.get("heartbeat_s") or 0.0)
    if every <= 0:
        return None
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            records.say(cv.LIVE_HEARTBEAT, {})

    threading.Thread(target=beat, name="spanvisor-run-heartbeat", daemon=True).start()
    return stop


def _local_gate(identity: dict[str, str], reserved: rs.Reserved | None = None) -> Any:
    """The local gate (its socket linked at the reserved place, when one was
    named before the CLI started), deciding under the session's ``identity``,
    or None: each hook then decides by itself."""
    try:
        from spanvisor.launcher.gate import LocalGate

        gate = LocalGate(identity)
    except OSError as exc:
        rs.said(f"no local gate ({exc.strerror or exc}); each hook decides by itself")
        return None
    if reserved is not None:
        try:
            reserved.link(gate.path, gate.bin)
        except OSError as exc:
            rs.said(f"no local gate ({exc.strerror or exc}); each hook decides by itself")
            gate.close()
            return None
    return gate


def _quietly(send: Any) -> bool:
    try:
        return bool(send())
    except Exception as exc:
        rs.said(f"sending failed ({type(exc).__name__})")
        return False


HELP = f"run a coding-agent CLI ({', '.join(registry.NAMES)}) as a supervised task"


def _title(cli: str) -> str:
    adapter = registry.get(cli)
    return adapter.title if adapter is not None else cli


__all__ = ["HELP", "add_arguments", "cli_of", "handler", "main", "prompt_of", "task_name", "telemetry"]
