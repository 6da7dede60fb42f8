"""What each coding-agent CLI sends its permission hook and reads back.

* Claude Code ``PreToolUse`` and ``PermissionRequest``, and Codex
  ``PreToolUse``: stdin JSON with ``session_id``, ``hook_event_name``,
  ``tool_name``, ``tool_input`` (and ``tool_use_id``, ``cwd``); the answer is
  ``{"hookSpecificOutput": {"hookEventName": "PreToolUse",
  "permissionDecision": "allow|deny", "permissionDecisionReason": …}}`` or,
  for ``PermissionRequest``, ``{"hookSpecificOutput": {"hookEventName":
  "PermissionRequest", "decision": {"behavior": "allow|deny", "message": …}}}``.
  Codex's allow of a ``PreToolUse`` is ``{}``: it rejects
  ``permissionDecision: allow`` as unsupported.
* Gemini CLI ``BeforeTool``: stdin ``session_id``, ``tool_name``,
  ``tool_input``, ``timestamp``; the answer ``{"decision": "allow|deny",
  "reason": …}``.
* Qwen Code ``PreToolUse`` (a Gemini CLI fork that took Claude Code's hook
  contract): Claude Code's stdin and answer.
* GitHub Copilot CLI ``preToolUse``, and OpenCode, Cline: see
  :mod:`spanvisor.gate.contracts_more` (their inputs are read into the same
  :class:`Call`, their answers written there).

An allow is that JSON and exit status 0. Every other answer is a block: the
deny JSON on stdout, the reason on stderr and exit status 2, which each of
the CLIs reads as "block this call, show stderr to the model" (any other
non-zero status is a non-blocking error to Claude Code, Gemini CLI and Qwen
Code: the call would run), except Cline, which runs a call whose hook exits
non-zero: its block is exit status 0 with an answer that stops the call
(:func:`block_status`).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any, Literal, NamedTuple

from spanvisor.gate import contracts_more as more
from spanvisor.gate import paths
from spanvisor.redaction import clip_middle, redact

Cli = Literal["claude-code", "codex", "gemini", "qwen", "copilot", "opencode", "cline"]
CLIS: tuple[Cli, ...] = ("claude-code", "codex", "gemini", "qwen", "copilot", "opencode", "cline")
Answer = Literal["allow", "deny"]
EXIT_ALLOW = 0
EXIT_BLOCK = 2

# Where a tool's input names what it acts on, in order of preference.
_SHELL_KEYS = ("command", "cmd")
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
        scripts = self.tool_input.get(more.SCRIPTS_KEY)
        if isinstance(scripts, list) and scripts and all(isinstance(x, str) for x in scripts):
            return "\n".join(scripts)  # Cline's run_commands: each one runs, in order
        return None

    @property
    def paths(self) -> tuple[str, ...]:
        """Every file the call names, as given (lists, nested objects and
        patches included: :mod:`spanvisor.gate.paths`)."""
        return paths.named(self.tool_input)

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


def default_event(cli: Cli) -> str:
    return "BeforeTool" if cli == "gemini" else "PreToolUse"


def block_status(cli: Cli | None) -> int:
    """The exit status of a block: 2, which every CLI but Cline reads as
    "block"; Cline runs the call on any non-zero status, so its block is
    0 with an answer that stops the call."""
    return more.BLOCK_STATUS.get(cli or "", EXIT_BLOCK)


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
    doc = more.normalized(cli, doc)
    tool = doc.get("tool_name")
    if not isinstance(tool, str) or not tool:
        raise BadInput("the hook input has no tool_name")
    tool_input = doc.get("tool_input", {})
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise BadInput("the hook input's tool_input is not an object")
    event = doc.get("hook_event_name") or default_event(cli)
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
    if cli == "gemini":
        return {"decision": answer, "reason": reason}
    if cli in more.REPLIES:
        return more.REPLIES[cli](event, answer, reason)
    if cli == "codex" and answer == "allow" and event != "PermissionRequest":
        # Codex 0.169 reads a PreToolUse allow as "Hook failed: unsupported
        # permissionDecision: allow" (shown to the person, the call going on
        # under its own approval policy): nothing said is its allow.
        return {}
    if event == "PermissionRequest":
        decision: dict[str, Any] = {"behavior": answer}
        if answer == "deny":
            decision["message"] = reason
        return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}}
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": answer,
            "permissionDecisionReason": reason,
        }
    }


# The events a CLI tells its hooks about its turns and its session's end
# (command hooks; none is a tool call): the hook answers each with the CLI's
# neutral reply and exit status 0, never a block (a block of Claude Code's
# or Codex's ``Stop`` would make the agent go on), and ends the session's
# task at ``SessionEnd`` with the turn's outcome (spanvisor.cli.hook_end).
SESSION_EVENTS: dict[str, frozenset[str]] = {
    "claude-code": frozenset({"UserPromptSubmit", "Stop", "StopFailure", "SessionEnd"}),
    "codex": frozenset({"UserPromptSubmit", "Stop", "Interrupt", "SessionEnd"}),
    "gemini": frozenset({"BeforeAgent", "AfterAgent", "SessionEnd"}),
    # Claude Code's names; in ``-p`` runs only Stop fires (the hook ends the
    # session when the CLI then exits: spanvisor.cli.hook_end).
    "qwen": frozenset({"UserPromptSubmit", "Stop", "StopFailure", "SessionEnd"}),
    # Named here as in each CLI's settings (contracts_more reads them).
    "copilot": frozenset({"userPromptSubmitted", "agentStop", "errorOccurred", "sessionEnd"}),
    "cline": more.CLINE_ENDS,
    "opencode": frozenset({"SessionEnd"}),
}
# The events that end a session (each CLI's own names).
END_EVENTS = frozenset({"SessionEnd", "sessionEnd", *more.CLINE_ENDS})
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


def session_event(cli: Cli, raw: bytes | str) -> SessionEvent | None:
    """The turn or session event on stdin; None for anything else (a tool
    call, an event this CLI does not send its hooks, input that is not
    JSON), which :func:`parse` judges as before. An input naming a tool is
    never a session event."""
    events = SESSION_EVENTS.get(cli)
    if not events:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or "tool_name" in doc:
        return None
    doc = more.session_doc(cli, doc)
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
    )


# A session id as the CLIs write it, found without reading a large input
# whole: ``session_id`` (Claude Code's keys: Codex, Gemini CLI, Qwen Code,
# spanvisor's OpenCode plugin), ``sessionId`` (Copilot CLI), ``taskId``
# (Cline), each written first.
_SESSION_KEYS = ("session_id", "sessionId", "taskId")
_SESSION_ID = re.compile(rb'"(?:session_id|sessionId|taskId)"\s*:\s*"([^"\\]{1,512})"')
_READ_WHOLE = 256 * 1024


def session_id_of(raw: bytes) -> str | None:
    """The call's session id, read before the policy reads the call (the
    hook looks for the session's cancel meanwhile): the first top-level key
    of :data:`_SESSION_KEYS` of an input up to 256 KiB, else the first
    unescaped one of them. None when there is none."""
    if len(raw) <= _READ_WHOLE:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(doc, dict):
            return None
        for key in _SESSION_KEYS:
            sid = doc.get(key)
            if isinstance(sid, str) and sid:
                return sid
        return None
    m = _SESSION_ID.search(raw)
    return m.group(1).decode("utf-8", "replace") if m else None


def neutral_reply(cli: Cli, event: str) -> dict[str, Any]:
    """The reply that changes nothing (with exit status 0): the turn ends,
    the prompt goes on, the session ends as it would without the hook."""
    del cli, event  # every CLI reads an empty object so, for every one of these events
    return {}


__all__ = [
    "CLIS",
    "END_EVENTS",
    "EXIT_ALLOW",
    "EXIT_BLOCK",
    "SESSION_EVENTS",
    "Answer",
    "BadInput",
    "Call",
    "Cli",
    "SessionEvent",
    "block_status",
    "default_event",
    "neutral_reply",
    "parse",
    "reply",
    "session_event",
    "session_id_of",
]
