"""Factory Droid (``droid``, the ``@factory/cli`` binary): Claude Code's
hook contract, read from its 0.225 binary and checked with it.

``PreToolUse`` command hooks in its settings (``hooks.PreToolUse[].hooks[]``,
``timeout`` in seconds, 60 unless set): stdin ``session_id``,
``transcript_path``, ``cwd``, ``permission_mode``, ``hook_event_name``,
``tool_name``, ``tool_input``; Claude Code's deny JSON, or exit status 2,
blocks the call. A hook that cannot start, exits 1 or outlives its timeout
lets the call run, ``"onFailure": "block"`` or not (checked with 0.225.2):
the gate answers before the timeout and exits 0 or 2 on every path, and
its command must be an absolute path. ``droid exec`` fires ``Stop`` when a
turn ends and ``SessionEnd`` as it exits (no ``UserPromptSubmit``).

Its settings: ``~/.factory/settings.json``, a repository's
``.factory/settings.json`` and ``settings.local.json``, and
``/etc/factory/settings.json``; which of them a user or a repository can
override is not proven here, so its gate holds against mistakes only.
Its shell tool is ``Execute`` (``command``); its file tools name their
paths ``file_path``, ``directory_path``, ``path`` and ``folder``, and
``ApplyPatch`` its patch ``input``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from spanvisor.clis.adapter import Adapter, HookSetup, option


class Droid(Adapter):
    name = "droid"
    title = "Factory Droid"
    binaries = ("droid",)
    services = ("droid",)
    namespace = "droid"
    output = f"{__name__}.output"
    stream = f"{__name__}.stream"
    session_events = frozenset({"UserPromptSubmit", "Stop", "SessionEnd"})
    end_events = frozenset({"SessionEnd"})
    path_keys = frozenset({"file_path", "directory_path", "path", "folder", "input"})
    value_options = frozenset({"-o", "--output-format", "--auto", "-m", "--model", "-r", "--reasoning-effort", "-f"})
    hook_timeout_s = 60.0
    hook_folders = ("~/.factory/settings.json", ".factory/settings.json", ".factory/settings.local.json")

    def settings_files(self, env: Mapping[str, str], home: Path, cwd: str) -> list[Path]:
        del env
        project = Path(cwd) / ".factory"
        return [home / ".factory" / "settings.json", project / "settings.json", project / "settings.local.json"]

    def hook_setup(self, command: str, timeout_s: int) -> HookSetup | None:
        setup = super().hook_setup(command, timeout_s)
        return setup._replace(where="the user's ~/.factory/settings.json") if setup is not None else None

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry spanvisor reads: the launcher reads what `droid exec` prints.
        if "exec" not in argv[1:2]:
            return argv, "passthrough"
        fmt = option(argv, "-o", "--output-format")
        if fmt is None:  # json lines; the launcher prints the answer, as its text output does
            return [argv[0], "exec", "-o", "stream-json", *argv[2:]], "droid-text"
        return argv, "droid-stream" if fmt == "stream-json" else "passthrough"

    def stream_model(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
        from spanvisor.clis.droid import stream

        return stream.model_of(argv, env)


ADAPTER = Droid()
