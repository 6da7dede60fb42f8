"""A coding-agent CLI's adapter: everything spanvisor knows of one CLI.

The gate, the launcher, the receiver and the command line ask a CLI's
adapter (found by :mod:`spanvisor.clis.registry`) instead of naming the
CLI. An adapter says:

* **who it is:** its name (``spanvisor hook NAME``, a policy's ``cli``),
  the name a person reads, the commands the launcher recognises it by,
  the ``service.name`` its telemetry reports and the namespace of the task
  ids its sessions get;
* **how its hook input reads** into a call (:meth:`Adapter.read_call`,
  into Claude Code's keys: ``tool_name``, ``tool_input``, ``session_id``,
  ``hook_event_name``, ``tool_use_id``, ``cwd``), and into a turn's or a
  session's end (:meth:`Adapter.read_session`), with the keys its file
  tools name their paths by;
* **how an answer is written** (:meth:`Adapter.reply`) and with which exit
  status a block is (:attr:`Adapter.block_status`);
* **where its hook timeout is configured** (:meth:`Adapter.hook_timeouts`)
  and its default;
* **how an operator installs its hook** (:meth:`Adapter.hook_setup`, which
  ``spanvisor assets export`` writes out);
* **how the launcher starts it** (``spanvisor run``): its telemetry aimed
  at spanvisor (:meth:`Adapter.aim_telemetry`) and the output format the
  launcher reads its run's end from (:meth:`Adapter.output_plan`).

The base class is Claude Code's hook contract, which most CLIs took; an
adapter overrides what its CLI does differently. It runs on the gate's
path, so an adapter imports the standard library only (``make lint``
holds every built-in one to that) and does its work without I/O except
reading its own settings files.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from spanvisor.clis.ends import SessionEnds

if TYPE_CHECKING:  # what reads a run's output is imported when a run is read, never on the gate's path
    from spanvisor.clis.output import Ending, RunOutput
    from spanvisor.clis.stream import Report

Verdict = Literal["allow", "deny"]
# A settings file larger than this is not read (nobody writes one).
MAX_SETTINGS = 1024 * 1024
# What only a CLI's own session reader may state (never taken from another's input).
STATED = ("outcome", "said")


class Adapter:
    """One coding-agent CLI, as spanvisor sees it (Claude Code's hook
    contract unless a subclass says otherwise). Adapters hold no state:
    the registry makes one of each."""

    # Who it is.
    name: ClassVar[str]  # "claude-code": `spanvisor hook NAME`, a policy's `cli`
    title: ClassVar[str]  # "Claude Code": what a person reads
    binaries: ClassVar[tuple[str, ...]] = ()  # the commands `spanvisor run -- CMD` knows it by
    # The service.name its telemetry reports; the first is the one spanvisor
    # gives a session's task (the hook's, the launcher's).
    services: ClassVar[tuple[str, ...]]
    namespace: ClassVar[str]  # a session's task id is "<namespace>:<session id>"

    # Its hook input.
    tool_events: ClassVar[tuple[str, ...]] = ("PreToolUse",)  # the events that ask about a tool call
    session_events: ClassVar[frozenset[str]] = frozenset()  # turn and session events its hooks get
    end_events: ClassVar[frozenset[str]] = frozenset()  # those that end the session
    session_keys: ClassVar[tuple[str, ...]] = ("session_id",)  # where its input names the session
    # It sends a Notification hook when a person must answer at its terminal.
    notifies: ClassVar[bool] = False
    # Its PermissionRequest hook comes just before its own prompt (a person
    # deciding in Slack and its prompt must not both ask).
    asks_at_terminal: ClassVar[bool] = False
    # How its turns and its session end, as its hooks tell it.
    ends: ClassVar[SessionEnds] = SessionEnds()
    # The keys its file tools name their paths by (the gate reads every
    # key it knows in any spelling; these are the ones proven per CLI).
    path_keys: ClassVar[frozenset[str]] = frozenset()

    # Its answer.
    block_status: ClassVar[int] = 2  # the exit status it reads as "block this call"
    # The exit status of a deny beside its deny JSON (a status it reads as
    # a block holds where another hook's allow would win over the JSON).
    deny_status: ClassVar[int] = 0

    # Its options that take a value (the launcher names a task by the last
    # plain argument that is none of these), beyond the common ones.
    value_options: ClassVar[frozenset[str]] = frozenset()

    # Its hook timeout when its settings give none, in seconds.
    hook_timeout_s: ClassVar[float] = 600.0

    # The files its gate is when no settings name a hook (its plugin, its
    # hook scripts), as ``spanvisor assets export`` writes them out: (the
    # package that carries them, their folder in it, what to do with them).
    gate_assets: ClassVar[tuple[str, str, str] | None] = None

    # Where it reads hooks when it has no system-wide place for them
    # (:meth:`system_settings` None): each of these is the user's or the
    # repository's to write, so its gate holds against mistakes only.
    hook_folders: ClassVar[tuple[str, ...]] = ()

    # The module that reads its own telemetry (log records, or spans when
    # the module says FROM_SPANS) into what serve tracks; None: it sends
    # none spanvisor reads (the launcher reports for it).
    records: ClassVar[str | None] = None
    # The module that reads its run's output under ``spanvisor run`` (its
    # ``read``, ``unsaid`` and, for a ``json`` kind, ``done``: see
    # :mod:`.output`, and :meth:`output_plan` for the modes it asks for);
    # None: the exit code alone tells the end.
    output: ClassVar[str | None] = None
    # The module that reads what it prints into what the launcher reports
    # (its ``read`` and ``model``: :mod:`.stream`), for a CLI that sends no
    # telemetry spanvisor reads; None: its own telemetry says it.
    stream: ClassVar[str | None] = None

    @property
    def service(self) -> str:
        """The ``service.name`` of the tasks spanvisor makes of its sessions."""
        return self.services[0]

    @property
    def default_event(self) -> str:
        """The event a tool call is, when its input does not say."""
        return self.tool_events[0]

    def read_call(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A tool call's input in Claude Code's keys (``doc`` as it is when
        the CLI uses them)."""
        return doc

    def read_session(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        """A turn's or session's event in Claude Code's keys, plus
        ``said`` (an error's text) and ``outcome`` (how the event says the
        session ended) when the CLI states them; None when ``doc`` is no
        such event of this CLI."""
        return {k: v for k, v in doc.items() if k not in STATED}

    def reply(self, event: str, answer: Verdict, reason: str) -> dict[str, Any]:
        """The JSON the CLI reads back for ``answer`` to a call of ``event``."""
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

    def neutral_reply(self, event: str) -> dict[str, Any]:
        """The reply to a turn or session event that changes nothing (with
        exit status 0)."""
        del event
        return {}

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        """Where the CLI reads its hooks' settings (user, project, system)."""
        del env, home, cwd
        return []

    def hook_timeouts(self, doc: Any) -> Iterator[tuple[str, float | None]]:
        """(command, timeout in seconds or None when unset) of each hook
        entry of :attr:`tool_events` in one settings document (Claude
        Code's layout: ``hooks.<event>[].hooks[]``, ``timeout`` in seconds)."""
        for entry in hook_entries(doc, self.tool_events):
            yield command_text(entry.get("command")), positive(entry.get("timeout"))

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        """Its settings holding the gate's hook (``command`` before every
        tool call, with ``timeout_s``; the same command for its turn and
        session events, so a session ends without the launcher): where the
        file goes, and its text. Claude Code's layout, in ``settings.json``."""
        setup: dict[str, Any] = {}
        for event in (*self.tool_events, *sorted(self.session_events)):
            entry: dict[str, Any] = {"type": "command", "command": command}
            if event in self.tool_events:
                entry["timeout"] = timeout_s
            setup[event] = [{"matcher": "*", "hooks": [entry]}]
        return HookSetup("settings.json", json.dumps({"hooks": setup}, indent=2) + "\n", "the user's settings.json")

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        """Where the CLI reads settings for every user of the machine, which
        no user or repository overrides (``spanvisor gate install`` writes
        the gate's hook there); None when it has no such place."""
        del env
        return None

    def system_setup(self, command: str, timeout_s: int, place: Path | None = None) -> HookSetup | None:
        """What ``spanvisor gate install`` adds to :meth:`system_settings`
        (``place``, where the CLI will read it): :meth:`hook_setup`, unless
        the system's file says more (a JSON file is merged with what it
        holds; a TOML one gets marked blocks)."""
        del place
        return self.hook_setup(command, timeout_s)

    def system_companions(self, command: str, timeout_s: int) -> dict[str, str]:
        """Files ``spanvisor gate install`` writes beside :meth:`system_settings`
        (a name relative to its folder: its text), for a CLI whose gate is a
        file of its own (OpenCode's plugin, Copilot CLI's policy hook file)."""
        del command, timeout_s
        return {}

    def aim_telemetry(self, argv: list[str], env: dict[str, str], endpoint: str, tool_details: bool) -> list[str]:
        """Its arguments, with ``env`` (its environment, changed in place)
        aiming its telemetry at ``endpoint`` (OTLP/HTTP). ``tool_details``:
        whether it may report each tool call's input (the command, the
        file). The launcher has set ``OTEL_RESOURCE_ATTRIBUTES`` and the
        token's ``OTEL_EXPORTER_OTLP_HEADERS`` already."""
        del env, endpoint, tool_details
        return argv

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        """Its arguments with the machine-readable output the launcher reads
        its run's end from, and how to read it (a mode, ``<name>-<kind>``:
        :mod:`.output`); ``passthrough``: nothing is read."""
        return argv, "passthrough"

    def read_output(self, out: RunOutput, text: str) -> str | None:
        """One line of its run's stdout, read into ``out``; what the launcher
        shows of it (None: nothing)."""
        module = self._output()
        return text if module is None else module.read(out, text)

    def output_done(self, out: RunOutput) -> None:
        """Its stdout ended (a ``json`` kind reads its one document here)."""
        module = self._output()
        done = getattr(module, "done", None)
        if done is not None:
            done(out)

    def ended_unsaid(self, out: RunOutput, program: str, code: int) -> Ending | None:
        """How a run whose output said no result, that exited ``code`` (no
        signal's), ended as this CLI does it; None: by its exit code."""
        module = self._output()
        if module is None or out.mode == "passthrough":
            return None
        ending: Ending | None = module.unsaid(out, program, code, self.title)
        return ending

    def read_stream(self, report: Report, doc: dict[str, Any]) -> None:
        """One JSON line of what it printed under ``spanvisor run``, said through ``report``."""
        if self.stream is not None:
            importlib.import_module(self.stream).read(report, doc)

    def stream_model(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
        """The model a launched session uses, as far as its command or settings say."""
        if self.stream is None:
            return None
        given: str | None = importlib.import_module(self.stream).model(argv, env, cwd)
        return given

    def prepare_run(self, argv: list[str], env: dict[str, str], cwd: str) -> tuple[list[str], str | None, str | None]:
        """What ``spanvisor run`` does before the CLI starts: its arguments,
        what to tell the user, and a warning the task shows (None: none)."""
        del env, cwd
        return argv, None, None

    @property
    def gives_gate(self) -> bool:
        """Whether ``spanvisor run --gate`` gives it the gate (:meth:`give_gate`)."""
        return type(self).give_gate is not Adapter.give_gate

    def give_gate(
        self, argv: list[str], env: dict[str, str], folder: str
    ) -> tuple[list[str] | None, str | None, str | None] | None:
        """``spanvisor run --gate`` for a CLI whose settings name no hook:
        (its arguments, or None when it must not start ungated; what to tell
        the user; a file its gate writes when it loads, for the launcher to
        check), with ``env`` changed in place and ``folder`` the launcher's
        own. None: its gate is set in its settings, not by the launcher."""
        del argv, env, folder
        return None

    def entry_weaknesses(self, doc: Any, command: str) -> list[str]:
        """What in its settings document ``doc`` makes the gate's entry
        running ``command`` fail open, beyond the command itself (which
        ``spanvisor check`` looks at for every CLI); empty when nothing does."""
        del doc, command
        return []

    def check(self, env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
        """``spanvisor check``'s look at a gate of its own beyond the hook
        entries of its settings (a plugin file it loads): (problems,
        warnings, what passed); nothing to say by default."""
        del env, cwd
        return [], [], []

    @property
    def http_hooks(self) -> bool:
        """Whether it takes a hook of type ``http`` (:meth:`with_http_hook`):
        the launcher's ``SPANVISOR_LOCAL_GATE=http`` and serve's
        ``/v1/hooks/<name>`` answer it with no process per call."""
        return type(self).with_http_hook is not Adapter.with_http_hook

    def with_http_hook(self, argv: list[str], url: str, timeout_s: float, folder: str) -> list[str] | None:
        """Its arguments with one ``http`` hook before every tool call
        (``url``, answered within ``timeout_s``; a hook that fails or times
        out must block) merged into the settings they give, written to a
        file in ``folder`` (the launcher's, private: the URL holds a secret
        and a command line is every local user's to read); None when the
        given settings cannot be read. Only for a CLI that has such hooks
        (:attr:`http_hooks`)."""
        raise NotImplementedError(f"{self.title} has no http hook")

    def transcript_turn(self, path: str, prompt: str) -> tuple[str, str | None] | None:
        """How its last turn ended, from the conversation it keeps
        (``transcript_path``), when no turn event answered ``prompt``:
        (state, error), or None when the transcript does not say."""
        del path, prompt
        return None

    def exit_status(self, out: RunOutput, code: int) -> int:
        """The launcher's exit status for a run that exited ``code``: the
        CLI's, unless the format the launcher asked for exits otherwise than
        the one the user would have had (its output module's ``exit_status``)."""
        module = self._output()
        given = getattr(module, "exit_status", None)
        return code if given is None else int(given(out, code))

    def _output(self) -> Any:
        # Imported when a run is read, never on the gate's path.
        return None if self.output is None else importlib.import_module(self.output)


class HookSetup(NamedTuple):
    """A CLI's hook settings as an operator installs them."""

    name: str  # the file's name
    text: str
    where: str  # where the CLI reads it (said to the operator)


def option(args: Sequence[str], *names: str, joined: bool = False) -> str | None:
    """The value of the first of ``names`` in ``args`` (``-o V``, ``-o=V``;
    ``joined``: also a short name with its value joined, ``-oV``, as a CLI
    whose parser reads it so does)."""
    for i, a in enumerate(args):
        if a == "--":
            break  # what follows is plain arguments (a prompt), never options
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
            if joined and len(n) == 2 and n[1] != "-" and a.startswith(n) and len(a) > 2:
                return a[2:]
    return None


def default(env: dict[str, str], key: str, value: str) -> None:
    """``env[key] = value`` unless the user set it."""
    if not env.get(key, "").strip():
        env[key] = value


def hook_entries(doc: Any, events: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The command entries of ``events`` in Claude Code's settings layout."""
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    if not isinstance(hooks, dict):
        return
    for event in events:
        groups = hooks.get(event)
        for group in groups if isinstance(groups, list) else []:
            inner = group.get("hooks") if isinstance(group, dict) else None
            for entry in inner if isinstance(inner, list) else []:
                if isinstance(entry, dict) and entry.get("type", "command") == "command":
                    yield entry


def command_text(command: Any) -> str:
    """A hook entry's command as one string (an argv list joined)."""
    if isinstance(command, list):
        return " ".join(str(c) for c in command)
    return command if isinstance(command, str) else ""


def positive(raw: Any) -> float | None:
    """A timeout as a settings file gives it: a positive number, else None."""
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0
    return float(raw) if ok else None


def said(value: object) -> str | None:
    """An error's message: ``{"message": …}`` (an API's error body may be
    a JSON string inside it), else the string itself."""
    if isinstance(value, dict):
        value = value.get("message")
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.startswith("{"):
        try:
            inner = json.loads(text)
        except (ValueError, RecursionError):
            return text
        nested = inner.get("error") if isinstance(inner, dict) else None
        for where in (inner, nested):
            found = where.get("message") if isinstance(where, dict) else None
            if isinstance(found, str) and found.strip():
                return found.strip()
    return text


def json_files(folder: Path, limit: int = 64) -> list[Path]:
    """The ``*.json`` files of ``folder``, by name, at most ``limit``."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))[:limit]
    except OSError:
        return []
    return [folder / n for n in names]


__all__ = [
    "MAX_SETTINGS",
    "STATED",
    "Adapter",
    "HookSetup",
    "Verdict",
    "command_text",
    "default",
    "hook_entries",
    "json_files",
    "option",
    "positive",
    "said",
]
