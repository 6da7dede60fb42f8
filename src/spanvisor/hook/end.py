"""``spanvisor hook`` at a turn's and a session's end: the task of a session
run without the launcher ends as the CLI says it ended.

The CLIs tell their hooks (checked with the pinned versions, offline):

* **Claude Code**: ``Stop`` when a turn finished (its ``prompt_id``),
  ``StopFailure`` instead when an API error ended it (fire-and-forget: the
  CLI does not wait for it), and ``SessionEnd`` (``reason`` ``other`` in
  ``-p`` mode, with the last ``prompt_id``) on every end but a crash: on
  success, an API error, SIGTERM and SIGINT alike. A ``SessionEnd`` whose
  prompt no ``Stop`` or ``StopFailure`` answered ended mid-turn: signalled
  or interrupted.
* **Codex**: ``UserPromptSubmit`` (a turn opens), ``Stop`` (the turn
  finished), ``Interrupt`` (SIGINT stopped it) and ``SessionEnd``; an API
  error fires ``SessionEnd`` with the turn still open; SIGTERM kills it
  before any hook.
* **Gemini CLI**: ``BeforeAgent`` (a turn opens), ``AfterAgent`` (it
  finished) and ``SessionEnd`` (``reason`` ``exit``), which SIGTERM and
  SIGINT fire too, mid-turn; an API error exits without any.
* **Qwen Code**: Claude Code's names; with a prompt (``-p``) only ``Stop``
  fires (no ``SessionEnd``; an API error and a signal fire nothing): its
  ``Stop`` ends the session once the CLI, started with ``-p``, exits.
* **Copilot CLI**: ``userPromptSubmitted``, ``agentStop`` (the turn
  finished), ``errorOccurred`` (an API error, its message) and
  ``sessionEnd`` (``reason`` ``complete`` or ``error``; SIGTERM says
  ``complete`` with its turn open).
* **Cline**: ``TaskStart`` (its task opens; named from the manifest it
  wrote, clis/cline), ``TaskComplete``, ``TaskError`` (its message) and
  ``TaskCancel``, each its task's end (SIGTERM lets the model's answer
  come, then fires ``TaskComplete``), and ``SessionShutdown`` when its run
  stopped without one (a hook's cancel): the first end heard is the end.
* **OpenCode**: spanvisor's plugin sends ``SessionEnd`` with the last
  turn's outcome as OpenCode shuts down (SIGTERM kills it before).

Every one of these is answered at once with the CLI's neutral reply (exit
status 0, never a block: a block of ``Stop`` would keep the agent going).
A turn's event is remembered first (:mod:`spanvisor.gate.turns`: the CLI
runs the next hook only once this one answered); ``SessionEnd`` is
answered, released (the CLI goes on exiting), and only then the task is
ended: after the CLI's own last records (it waits, a few seconds at most,
for the CLI to exit), as the launcher ends it, by the task root's span.
Under the launcher (``SPANVISOR_TASK_ID``) nothing is remembered or ended
here: the launcher ends its task. A session that dies without a
``SessionEnd`` ends by liveness.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping

from spanvisor.clis import registry
from spanvisor.clis.ends import SessionEnds
from spanvisor.gate import contracts as gc
from spanvisor.gate import turns
from spanvisor.gate.answer import Answer
from spanvisor.gate.session import TaskKey, session_of

# How long SessionEnd waits for a StopFailure Claude Code fired just before
# it without waiting (measured: 15 ms apart), and for the CLI to exit. The
# end is sent after the answer released the CLI, so a slow exit (a loaded
# machine: a CLI flushing its own telemetry) costs the CLI nothing here.
TURN_WAIT_S = 1.0
CLI_EXIT_WAIT_S = 10.0
REQUEST_TIMEOUT_S = 5.0
# Tries of the end once the CLI was released (nothing waits for them): a
# receiver slow to take it (busy, restarting) is given 0.5, 1, 2 s between
# tries; one missed end would leave the task to liveness.
RELEASED_TRIES = 4
# How long a Qwen Code run with a prompt (``-p``) is given to exit after its
# Stop, which is its session's last event there (it fires no SessionEnd).
# After the answer, so nothing waits for it: on a loaded machine a run took
# more than 10 s to exit after its Stop, and its task was then never ended.
HEADLESS_EXIT_WAIT_S = 60.0
_PROMPT_FLAGS = ("-p", "--prompt")
# What a session's turn file holds once its first end ended it (a CLI
# whose first end is final: SessionEnds.first_final).
ENDED = "ended"
# Processes between the hook and the CLI: a shell running the hook's
# command, the hook's own waiting parent.
_BETWEEN = ("sh", "bash", "dash", "zsh", "python", "spanvisor")

End = tuple[str, str | None, str]  # (status, error, message), as run_result.end_of says it


def answer(ev: gc.SessionEvent, args: argparse.Namespace, out: Answer, env: Mapping[str, str]) -> int:
    """The neutral reply, and for a session's end its task ended after it."""
    reply = gc.neutral_reply(ev.cli, ev.event)
    cli_pid: int | None = None
    headless_stop = False
    try:
        key = session_of(ev.cli, ev.session_id, env)
        if key is None or key.launched:
            return out.neutral(reply)
        if not gc.ends_session(ev.cli, ev.event):
            turn = turn_of(ev)
            # The session's first prompt names its task: a person can find it
            # (to cancel it) while it runs, whatever the CLI's telemetry says.
            first = turn is not None and turn.state == "open" and turns.latest(key.task_id, env) is None
            if turn is not None:
                turns.note(key.task_id, turn, env)
            adapter = registry.get(ev.cli)
            headless_last = adapter.ends.headless_last if adapter is not None else None
            if ev.event != headless_last or out.release is None:
                code = out.neutral(reply)
                if first and ev.prompt:
                    named(key, ev.prompt, args, env)
                return code
            # A CLI run with a prompt (-p) that ends after this event, saying nothing more.
            cli_pid = _cli_pid()
            if cli_pid is None or not _headless(cli_pid):
                return out.neutral(reply)
            ev, headless_stop = ev._replace(event="SessionEnd"), True
        elif out.release is not None and _ends(ev).waits_for_exit and not getattr(args, "key_sessions", False):
            # In the hook's own process (its answer released to a waiting parent),
            # the CLI is an ancestor whose exit the end waits for (unless its
            # end comes as it shuts down: nothing to wait for).
            cli_pid = _cli_pid()
    except Exception:  # whatever fails here, the reply stays neutral (the session's end reads as unheard of)
        return out.neutral(reply)
    code = out.neutral(reply)
    if headless_stop and cli_pid is not None:
        if not _wait_gone(cli_pid, HEADLESS_EXIT_WAIT_S):
            return code  # still running: not its end after all
        cli_pid = None
    finish(ev, key, args, env, cli_pid, released=out.release is not None)
    return code


def named(key: TaskKey, prompt: str, args: argparse.Namespace, env: Mapping[str, str]) -> bool:
    """Name the session's task after ``prompt`` (one line, clipped, secrets
    redacted, as the CLIs' records name theirs), after the answer: its
    start record, which opens the task if nothing else did yet."""
    from spanvisor.clis.records import MAX_NAME, clean
    from spanvisor.hook import task as ct
    from spanvisor.spans import conventions as cv

    name = clean(prompt, MAX_NAME)
    if not name:
        return False
    target = ct.otlp_args(ct.otlp_endpoint(getattr(args, "endpoint", None), env), args.otlp_token, REQUEST_TIMEOUT_S)
    task = ct.SessionTask(key.key, key.service, False, target)
    try:
        return task.post(cv.LIVE_TASK_START, {cv.AGENT_ID: key.service, cv.TASK_NAME: name}, REQUEST_TIMEOUT_S)
    except Exception:  # after the answer: nothing of it reaches the CLI
        return False


def turn_of(ev: gc.SessionEvent, at: int | None = None) -> turns.Turn | None:
    """What a turn's event says of the turn (None: nothing), by the CLI's
    own names for them (its adapter's ``ends.turns``)."""
    now = time.time_ns() if at is None else at
    state = _ends(ev).turns.get(ev.event)
    if state in ("open", "complete", "cancelled"):
        return turns.Turn(state, ev.turn, None, now)  # type: ignore[arg-type]
    if state == "error":
        said = ev.said or _ends(ev).turn_error
        return turns.Turn("error", ev.turn, f"{said} ({ev.error})" if ev.error else said, now)
    return None


def _ends(ev: gc.SessionEvent) -> SessionEnds:
    adapter = registry.get(ev.cli)
    return adapter.ends if adapter is not None else SessionEnds()


def stated_turn(ev: gc.SessionEvent, at: int | None = None) -> turns.Turn | None:
    """The last turn as an end event itself states it (Cline's task ends,
    OpenCode's plugin): None when it says nothing."""
    if ev.outcome not in ("open", "complete", "error", "cancelled"):
        return None
    now = time.time_ns() if at is None else at
    return turns.Turn(ev.outcome, None, ev.said, now)  # type: ignore[arg-type]


def ending(ev: gc.SessionEvent, turn: turns.Turn | None, cancel: turns.Cancel | None) -> End:
    """How the session ended, from its end event, its latest turn and a
    cancel the hook saw. Never success without a turn that finished."""
    adapter = registry.get(ev.cli)
    name = adapter.title if adapter is not None else ev.cli
    facts = _ends(ev)
    if cancel is not None:
        return "cancelled", None, f"{cancel.text()} · its tool calls were blocked by spanvisor hook"
    # An end that names the prompt its turn answered: a turn heard of for
    # another prompt says nothing of this one.
    if turn is not None and facts.names_turn and ev.turn and turn.key not in (None, ev.turn):
        turn = None
    state = turn.state if turn is not None else None
    if ev.reason in facts.error_reasons and state != "error":
        return "error", f"{name} ended on an error (its output says why)", "Failed"
    if state == "complete":
        return "complete", None, "Finished"
    if state == "error":
        return "error", (turn.error if turn is not None else None) or f"{name}'s turn failed", "Failed"
    if state == "cancelled" and ev.outcome == "cancelled":
        return "cancelled", None, f"{name} cancelled its task" + (f": {turn.error}" if turn and turn.error else "")
    if state == "cancelled":
        return "cancelled", None, f"{name} was interrupted (SIGINT)"
    if (stopped := facts.stopped_by.get(ev.event)) is not None:
        return "cancelled", None, f"{name} {stopped}"
    if turn is None and facts.no_prompt_completes and not ev.turn:
        return "complete", None, "Finished (no prompt was run)"
    status, said = facts.open_turn
    return (
        status,
        (f"{name} {said}" if status == "error" else None),
        ("Failed" if status == "error" else f"{name} {said}"),
    )


def finish(
    ev: gc.SessionEvent,
    key: TaskKey,
    args: argparse.Namespace,
    env: Mapping[str, str],
    cli_pid: int | None = None,
    released: bool = False,
) -> bool:
    """End the session's task (after the answer): whether serve took it.
    ``released``: the CLI no longer waits for this process (more tries)."""
    facts = _ends(ev)
    heard = turns.latest(key.task_id, env)
    if facts.first_final and heard is not None and heard.key == ENDED:
        return False  # its task ended already: a later end hook (Cline's SessionShutdown) says nothing of it
    turn = stated_turn(ev) or heard
    if facts.names_turn and ev.turn and not _answered(turn, ev.turn):
        turn = _awaited(key.task_id, ev.turn, turn, env) if ev.transcript is None else turn
        if not _answered(turn, ev.turn) and ev.transcript is not None:
            turn = _transcript_turn(ev, ev.transcript, ev.turn) or turn
    status, error, message = ending(ev, turn, turns.cancel_of(key.task_id, env))
    if cli_pid is not None:
        _wait_gone(cli_pid, CLI_EXIT_WAIT_S)
    from spanvisor.gate import notes
    from spanvisor.hook import task as ct

    token = getattr(args, "otlp_token", None)
    try:
        notes.deliver(token=token)  # the gate's own notes go before the end
    except Exception:
        pass
    target = ct.otlp_args(ct.otlp_endpoint(getattr(args, "endpoint", None), env), token, REQUEST_TIMEOUT_S)
    proof, unproved = None, False
    if getattr(args, "key_sessions", False):  # the system gate keyed the session: its end proves it is the gate's
        from spanvisor.hook import sessionkey

        proof = sessionkey.proof(key.task_id, env)
        held = turns.secret_of(key.task_id, env)
        unproved = proof is None and held is not None and held.sent > 0
    ended_ns = time.time_ns()
    # A CLI that runs its end hooks detached and exits (Cline: nothing waits
    # for them, and no later hook of the session delivers a spooled end): a
    # receiver slow to take the end is given more tries here (0.5, 1, 2, 2 s
    # apart, about 25 s in all with each try's timeout).
    tries = max(1, facts.tries, RELEASED_TRIES if released else 1)
    took = False
    for attempt in range(tries):
        try:
            took = ct.SessionTask(key.key, key.service, False, target).end(
                None, ended_ns, status, error, message, proof
            )
        except Exception:
            took = False
        if took:
            break
        if attempt + 1 < tries:
            time.sleep(min(2.0, 0.5 * 2**attempt))
    if unproved:
        # Its CLI still runs: the agent's word, sent as a claim. The session
        # goes on, and its real end needs what it remembers (the key above all).
        return took
    turns.forget(key.task_id, env)
    if facts.first_final:  # the first of its ends is its end (kept until the sweep)
        turns.note(key.task_id, turns.Turn(status, ENDED, None, time.time_ns()), env)  # type: ignore[arg-type]
    turns.sweep(env)
    return took


def _answered(turn: turns.Turn | None, prompt: str) -> bool:
    return turn is not None and turn.key == prompt and turn.state != "open"


def _transcript_turn(ev: gc.SessionEvent, path: str, prompt: str) -> turns.Turn | None:
    """The prompt's turn as the CLI's transcript says it ended (its adapter reads it)."""
    adapter = registry.get(ev.cli)
    said = adapter.transcript_turn(path, prompt) if adapter is not None else None
    if said is None:
        return None
    state, error = said
    return turns.Turn(state, prompt, error, time.time_ns())  # type: ignore[arg-type]


def _awaited(task_id: str, prompt: str, turn: turns.Turn | None, env: Mapping[str, str]) -> turns.Turn | None:
    """The turn of ``prompt``, waited for a moment: Claude Code fires
    StopFailure and does not wait for it before SessionEnd."""
    until = time.monotonic() + TURN_WAIT_S
    while (turn is None or turn.key != prompt or turn.state == "open") and time.monotonic() < until:
        time.sleep(0.05)
        turn = turns.latest(task_id, env)
    return turn


def _cli_pid() -> int | None:
    """The CLI's process: the first ancestor that is neither a shell running
    the hook's command nor this hook's own (Linux; None elsewhere)."""
    pid = os.getppid()
    for _ in range(4):
        stat = _stat(pid)
        if stat is None:
            return None
        comm, ppid = stat
        if not comm.startswith(_BETWEEN):
            return pid
        pid = ppid
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 1 :].split()
    return (comm, int(fields[1])) if len(fields) > 1 and fields[1].isdigit() else None


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"  # exited, not yet reaped
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, within_s: float) -> bool:
    """Whether ``pid`` exited within ``within_s``."""
    until = time.monotonic() + within_s
    while not _gone(pid):
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True


def _headless(pid: int) -> bool:
    """Whether the CLI was started with a prompt to run and exit (``-p``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return False
    return any(a in _PROMPT_FLAGS or a.startswith("--prompt=") for a in argv)


__all__ = [
    "CLI_EXIT_WAIT_S",
    "HEADLESS_EXIT_WAIT_S",
    "TURN_WAIT_S",
    "answer",
    "ending",
    "finish",
    "stated_turn",
    "turn_of",
]
