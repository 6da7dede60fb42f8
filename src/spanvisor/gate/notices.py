"""The CLI's own notifications: a session waiting at its terminal.

Claude Code (2.1.330, checked under a terminal against a fake model) runs
its ``Notification`` hooks when something waits for the person at its
terminal. Its permission dialog fires one with ``notification_type``
``permission_prompt`` (message "Claude needs your permission") once the
dialog has been on screen for 6 s with no key pressed; stdin holds
``session_id``, ``prompt_id``, ``transcript_path``, ``cwd``,
``hook_event_name``, ``message`` and ``notification_type``, and no tool:
the call it asks about is the transcript's last ``tool_use`` that has no
``tool_result`` yet. ``-p`` mode shows no dialog (a call that needs
permission is denied), so no such notification comes there.

:func:`notice_of` reads such an input (never a tool call: an input naming a
tool is judged by the gate); :func:`waiting_note` makes the note that shows
the session's task as waiting, sent the way the gate's audit notes are
(:mod:`spanvisor.gate.notes`): a checkpoint on the task root with
``agent.status`` ``waiting``. The receiver ends the wait when Claude Code
reports the person's answer (its ``tool_decision`` record from a
``user_*`` source). Standard library only, as the rest of the gate.

With ``spanvisor hook … --at-terminal`` (Claude Code and Codex), a
``PermissionRequest`` is such a notice too (:func:`notice_of`): the CLI
runs it just before its own prompt (Claude Code 2.1.330's dialog; Codex
0.169's interactive UI, "Would you like to run the following command?",
the only hook it runs there), with the call's ``tool_name`` and
``tool_input``. The hook's neutral answer lets the prompt show (the person
at the terminal decides, at once rather than 6 s later), and the call is
named from the input itself. Without the option a ``PermissionRequest`` is
the gate's to decide, as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from typing import Any, NamedTuple

from spanvisor.clis import registry
from spanvisor.gate import otlp
from spanvisor.gate.session import otlp_endpoint, session_of
from spanvisor.redaction import clip_middle, redact

EVENT = "Notification"
REQUEST = "PermissionRequest"
# The notifications that mean "a person must answer at the terminal".
WAITING_KINDS = frozenset({"permission_prompt"})
STATUS = "agent.status"  # spanvisor.spans.conventions.STATUS (pinned by tests/gate)
MAX_TEXT = 300
MAX_TARGET = 120
# How much of the transcript's end is read for the pending call.
TAIL_BYTES = 256 * 1024
_MARK = b'"Notification"'
_REQUEST_MARK = b'"PermissionRequest"'
Pending = tuple[str, str, dict[str, Any]]  # (call id, tool, input)
_TARGET_KEYS = ("command", "cmd", "file_path", "path", "pattern", "url", "query")


class Notice(NamedTuple):
    """One notification the CLI gave its hook."""

    cli: str
    session_id: str | None
    kind: str | None  # notification_type
    message: str | None
    prompt_id: str | None = None
    transcript: str | None = None
    call: Pending | None = None  # the call it asks about, when the input names it


def _has(raw: bytes | str, mark: bytes) -> bool:
    return (mark in raw) if isinstance(raw, bytes) else (mark.decode() in raw)


def notice_of(cli: str, raw: bytes | str, at_terminal: bool = False) -> Notice | None:
    """The ``Notification`` on stdin (with ``at_terminal``, a
    ``PermissionRequest`` too), or None for anything else (a tool call,
    another event, input that is not JSON: judged as before)."""
    adapter = registry.get(cli)
    if adapter is None:
        return None
    # Its adapter says whether it sends Notification, and whether its
    # PermissionRequest comes just before its own prompt.
    notification = adapter.notifies and _has(raw, _MARK)
    request = at_terminal and adapter.asks_at_terminal and _has(raw, _REQUEST_MARK)
    # Every tool call passes here: a substring search, never a second parse of a call.
    if not (notification or request):
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    event = doc.get("hook_event_name")

    def text(key: str) -> str | None:
        value = doc.get(key)
        return clip_middle(value, 2_000) if isinstance(value, str) and value else None

    if request and event == REQUEST:  # a call, but the person at the terminal decides it
        return Notice(
            cli,
            text("session_id"),
            REQUEST,
            None,
            text("prompt_id") or text("turn_id"),
            None,
            _requested(doc, text("tool_use_id") or text("call_id")),
        )
    if not notification or event != EVENT or "tool_name" in doc:
        return None
    return Notice(
        cli, text("session_id"), text("notification_type"), text("message"), text("prompt_id"), text("transcript_path")
    )


def _requested(doc: Mapping[str, Any], call_id: str | None) -> Pending | None:
    """The call a ``PermissionRequest`` names (None: no tool named)."""
    tool = doc.get("tool_name")
    if not isinstance(tool, str) or not tool.strip():
        return None
    tool_input = doc.get("tool_input")
    return call_id or "", tool[:200], tool_input if isinstance(tool_input, dict) else {}


def pending_call(transcript: str | None, limit: int = TAIL_BYTES) -> Pending | None:
    """The call the CLI waits on: ``(id, tool, input)`` of the transcript's
    last ``tool_use`` that no ``tool_result`` answered, from the file's last
    ``limit`` bytes; None when there is none or the file cannot be read (a
    path that is not a regular file is never opened: a FIFO would hang)."""
    if not transcript:
        return None
    try:
        fd = os.open(transcript, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        start = max(0, st.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line read is cut
    answered: set[str] = set()
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        message = doc.get("message") if isinstance(doc, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        blocks = [b for b in content if isinstance(b, dict)]
        answered.update(str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result")
        uses = [b for b in blocks if b.get("type") == "tool_use" and isinstance(b.get("name"), str)]
        if uses:
            open_uses = [b for b in uses if str(b.get("id")) not in answered]
            if not open_uses:
                return None  # the latest calls are answered: nothing waits
            b = open_uses[0]
            tool_input = b.get("input")
            return str(b.get("id") or ""), str(b["name"]), tool_input if isinstance(tool_input, dict) else {}
    return None


def call_text(tool: str, tool_input: Mapping[str, Any]) -> str:
    """``Bash(git push)``: the tool and what it acts on, clipped and redacted."""
    name = " ".join(tool.split())[:60] or "a tool"
    for key in _TARGET_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            target = clip_middle(redact(" ".join(value.split())), MAX_TARGET)
            return f"{redact(name)}({target})"
    return redact(name)


def waiting_text(n: Notice, call: Pending | None) -> str:
    """What the task shows while it waits."""
    adapter = registry.get(n.cli)
    name = adapter.title if adapter is not None else n.cli
    if call is not None:
        return f"⏸ Waiting at the terminal: {name} asks to use {call_text(call[1], call[2])}"
    said = clip_middle(redact(" ".join((n.message or "").split())), MAX_TEXT)
    return f"⏸ Waiting at the terminal: {said or f'{name} asks for permission'}"


def waiting_note(
    n: Notice, endpoint: str | None, env: Mapping[str, str], at: int, read_transcript: bool = True
) -> dict[str, Any] | None:
    """The note that shows the session's task waiting at its terminal (None:
    not a prompt that waits on a person, or no task named)."""
    if n.kind not in WAITING_KINDS and n.kind != REQUEST:
        return None
    session = session_of(n.cli, n.session_id, env)
    if session is None:
        return None
    call = n.call  # a PermissionRequest names it; a Notification leaves it to the transcript
    if call is None and read_transcript and n.kind != REQUEST:
        call = pending_call(n.transcript)
    basis = call[0] if call is not None and call[0] else f"{n.prompt_id}\x1f{at}"
    ident = hashlib.blake2b(f"{session.key}\x1f{basis}\x1fwaiting".encode(), digest_size=12).hexdigest()
    records: list[tuple[str, dict[str, Any], int]] = []
    if not session.launched:  # the note may come before the CLI's own records open the task
        records.append((otlp.LIVE_TASK_START, {otlp.TASK_ID: session.task_id, otlp.AGENT_ID: session.service}, at))
    attrs: dict[str, Any] = {otlp.TASK_ID: session.task_id, otlp.MESSAGE: waiting_text(n, call), STATUS: "waiting"}
    if call is not None:
        attrs["gen_ai.tool.name"] = redact(call[1][:60])
    records.append((otlp.EVENT_CHECKPOINT, attrs, at))
    records = [(name, {**a, otlp.RECORD_ID: f"{ident}.{i}"}, t) for i, (name, a, t) in enumerate(records)]
    return {
        "id": ident,
        "kind": "waiting",
        "session": [session.key, session.service, session.launched],
        "endpoint": otlp_endpoint(endpoint, env),
        "records": records,
    }


__all__ = [
    "EVENT",
    "REQUEST",
    "WAITING_KINDS",
    "Notice",
    "call_text",
    "notice_of",
    "pending_call",
    "waiting_note",
    "waiting_text",
]
