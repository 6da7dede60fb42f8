"""A tool call as the gate reads it, and the answer it writes, for any CLI.

Each CLI's hook contract (what it sends its permission hook, what it reads
back, the exit status it reads as a block, its turn and session events)
is its adapter's (:mod:`spanvisor.clis`): these functions read a hook's
input into one :class:`Call` (Claude Code's keys, into which every adapter
reads its CLI's) and write the answer through the adapter.

An allow is the CLI's allow JSON and exit status 0. Every other answer is a
block: the deny JSON on stdout, the reason on stderr and the adapter's
block status (2 for every CLI that reads any other non-zero status as a
non-blocking error, so the call would run; 0 for one that runs a call on
any non-zero status, whose deny JSON then stops the call).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from typing import Any, Literal, NamedTuple

from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter
from spanvisor.gate import paths
from spanvisor.redaction import clip_middle, redact

# A CLI's name, as its adapter gives it (spanvisor.clis.registry).
Cli = str
Answer = Literal["allow", "deny"]
EXIT_ALLOW = 0
EXIT_BLOCK = 2

# Where a tool's input names what it acts on, in order of preference.
_SHELL_KEYS = ("command", "cmd")
# A list of scripts a call runs, each in order (Cline's run_commands): read
# for every CLI, so no tool's scripts escape the command rules.
SCRIPTS_KEY = "commands"
_OTHER_KEYS = ("url", "pattern", "query")
# What a person is shown of the target in a one-line question: the start and
# the end (the whole is in the details and the action).
MAX_QUESTION_TARGET = 300
MAX_DETAILS = 8_000


class BadInput(ValueError):
    """The hook's stdin is not what the CLI documents."""


class Call(NamedTuple):
    """One tool call a CLI asks about."""

    cli: Cli
    event: str
    session_id: str | None
    tool: str
    tool_input: dict[str, Any]
    call_id: str | None
    cwd: str | None = None

    @property
    def command(self) -> str | None:
        """The shell command the call runs, whole (an argv list is joined
        with shell quoting, so its words stay words)."""
        for key in _SHELL_KEYS:
            value = self.tool_input.get(key)
            if isinstance(value, list) and value and all(isinstance(x, str) for x in value):
                return shlex.join(value)  # Codex may pass argv
            if isinstance(value, str) and value:
                return value
        scripts = self.tool_input.get(SCRIPTS_KEY)
        if isinstance(scripts, list) and scripts and all(isinstance(x, str) for x in scripts):
            return "\n".join(scripts)  # Cline's run_commands: each one runs, in order
        return None

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file the call names, as given (lists, nested objects and
        patches included: :mod:`spanvisor.gate.paths`), by every key the
        gate knows and the CLI's adapter names."""
        adapter = registry.get(self.cli)
        return paths.named(self.tool_input, adapter.path_keys if adapter is not None else frozenset())

    @property
    def path(self) -> str | None:
        """The first file the call names, as given."""
        found = self.paths
        return found[0] if found else None

    @property
    def target(self) -> str | None:
        """What the call acts on: its command, else its paths, URL or pattern."""
        if (command := self.command) is not None:
            return command
        if found := self.paths:
            return ", ".join(found)
        for key in _OTHER_KEYS:
            value = self.tool_input.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    def question(self) -> str:
        """What a person is asked: the tool and its target, redacted, with
        both ends of a long target shown."""
        target = self.target
        if target is None:
            return f"Allow {self.tool}?"
        return f"Allow {self.tool}: {clip_middle(redact(' '.join(target.split())), MAX_QUESTION_TARGET)}?"

    def details(self) -> str:
        """The tool input as JSON, redacted (for the person deciding)."""
        text = json.dumps(self.tool_input, sort_keys=True, ensure_ascii=False, default=str)
        return clip_middle(redact(text), MAX_DETAILS)

    def action(self) -> dict[str, Any]:
        """The action a decision is bound to: the tool and its arguments."""
        return {"tool": self.tool, "arguments": self.tool_input}


def adapter_of(cli: Cli) -> Adapter:
    """The CLI's adapter; :class:`BadInput` when no CLI has that name."""
    adapter = registry.get(cli)
    if adapter is None:
        raise BadInput(f"no coding-agent CLI is called {cli!r}")
    return adapter


def default_event(cli: Cli) -> str:
    return adapter_of(cli).default_event


def deny_status(cli: Cli | None) -> int:
    """The exit status of a deny beside its JSON (0 unless its adapter says otherwise)."""
    adapter = registry.get(cli) if cli else None
    return adapter.deny_status if adapter is not None else EXIT_ALLOW


def block_status(cli: Cli | None) -> int:
    """The exit status of a block, as the CLI reads it (2 unless its adapter
    says otherwise, and for a CLI nobody knows)."""
    adapter = registry.get(cli) if cli else None
    return adapter.block_status if adapter is not None else EXIT_BLOCK


def parse(cli: Cli, raw: bytes | str) -> Call:
    """The call on stdin; :class:`BadInput` (with a reason a person can act
    on, never the input itself) when it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the hook input is not JSON") from None
    except RecursionError:
        raise BadInput("the hook input is nested too deeply to read") from None
    if not isinstance(doc, dict):
        raise BadInput("the hook input is not a JSON object")
    adapter = adapter_of(cli)
    doc = adapter.read_call(doc)
    tool = doc.get("tool_name")
    if not isinstance(tool, str) or not tool:
        raise BadInput("the hook input has no tool_name")
    tool_input = doc.get("tool_input", {})
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise BadInput("the hook input's tool_input is not an object")
    event = doc.get("hook_event_name") or adapter.default_event
    if not isinstance(event, str):
        raise BadInput("the hook input's hook_event_name is not a string")
    session = doc.get("session_id")
    call_id = doc.get("tool_use_id") or doc.get("call_id")
    cwd = doc.get("cwd")
    return Call(
        cli=cli,
        event=event,
        session_id=session if isinstance(session, str) and session else None,
        tool=tool,
        tool_input=tool_input,
        call_id=call_id if isinstance(call_id, str) and call_id else None,
        cwd=cwd if isinstance(cwd, str) and cwd else None,
    )


def reply(cli: Cli, event: str, answer: Answer, reason: str) -> dict[str, Any]:
    """The JSON the CLI reads back for ``answer``."""
    return adapter_of(cli).reply(event, answer, reason)


# A CLI's turn and session events (its adapter's ``session_events``; none
# is a tool call) are answered with the CLI's neutral reply and exit status
# 0, never a block (a block of Claude Code's or Codex's ``Stop`` would make
# the agent go on); its ``end_events`` end the session's task with the
# turn's outcome (spanvisor.hook.end).
# What is kept of a string a session event carries (an error, a reason).
MAX_EVENT_TEXT = 2_000


class SessionEvent(NamedTuple):
    """A turn's start or end, or the session's end, as the CLI tells it."""

    cli: Cli
    event: str
    session_id: str | None
    turn: str | None = None  # Claude Code's prompt_id, Codex's turn_id
    reason: str | None = None  # SessionEnd's reason
    error: str | None = None  # StopFailure's error kind
    said: str | None = None  # the last assistant message (StopFailure: the API's error)
    transcript: str | None = None  # where the CLI keeps the conversation (transcript_path)
    outcome: str | None = None  # how the event itself says the session ended (Cline's, OpenCode's)
    prompt: str | None = None  # what the person asked, on a turn's start (the first one names the task)


def session_event(cli: Cli, raw: bytes | str) -> SessionEvent | None:
    """The turn or session event on stdin; None for anything else (a tool
    call, an event this CLI does not send its hooks, input that is not
    JSON), which :func:`parse` judges as before. An input naming a tool is
    never a session event."""
    adapter = registry.get(cli)
    if adapter is None or not adapter.session_events:
        return None
    events = adapter.session_events
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or "tool_name" in doc:
        return None
    doc = adapter.read_session(doc)
    if doc is None:
        return None
    event = doc.get("hook_event_name")
    if not isinstance(event, str) or event not in events:
        return None

    def text(key: str) -> str | None:
        value = doc.get(key)
        return clip_middle(value, MAX_EVENT_TEXT) if isinstance(value, str) and value else None

    return SessionEvent(
        cli=cli,
        event=event,
        session_id=text("session_id"),
        turn=text("prompt_id") or text("turn_id"),
        reason=text("reason"),
        error=text("error"),
        said=text("last_assistant_message") or text("said"),
        transcript=text("transcript_path"),
        outcome=text("outcome"),
        prompt=text("prompt"),
    )


_READ_WHOLE = 256 * 1024


def session_id_of(cli: Cli, raw: bytes) -> str | None:
    """The call's session id, read before the policy reads the call (the
    hook looks for the session's cancel meanwhile): the first of the CLI's
    session keys at the top of an input up to 256 KiB, else (without
    reading a large input whole) the first unescaped one. None when there
    is none, or no CLI has that name."""
    adapter = registry.get(cli)
    if adapter is None:
        return None
    if len(raw) <= _READ_WHOLE:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(doc, dict):
            return None
        for key in adapter.session_keys:
            sid = doc.get(key)
            if isinstance(sid, str) and sid:
                return sid
        return None
    m = _session_key(adapter.session_keys).search(raw)
    return m.group(1).decode("utf-8", "replace") if m else None


@functools.lru_cache(maxsize=16)
def _session_key(keys: tuple[str, ...]) -> re.Pattern[bytes]:
    names = b"|".join(re.escape(k.encode()) for k in keys)
    return re.compile(rb'"(?:' + names + rb')"\s*:\s*"([^"\\]{1,512})"')


def neutral_reply(cli: Cli, event: str) -> dict[str, Any]:
    """The reply that changes nothing (with exit status 0): the turn ends,
    the prompt goes on, the session ends as it would without the hook."""
    adapter = registry.get(cli)
    return adapter.neutral_reply(event) if adapter is not None else {}


def ends_session(cli: Cli, event: str) -> bool:
    """Whether ``event`` ends the CLI's session."""
    adapter = registry.get(cli)
    return adapter is not None and event in adapter.end_events


__all__ = [
    "EXIT_ALLOW",
    "EXIT_BLOCK",
    "SCRIPTS_KEY",
    "Answer",
    "BadInput",
    "Call",
    "Cli",
    "SessionEvent",
    "adapter_of",
    "block_status",
    "default_event",
    "deny_status",
    "ends_session",
    "neutral_reply",
    "parse",
    "reply",
    "session_event",
    "session_id_of",
]
