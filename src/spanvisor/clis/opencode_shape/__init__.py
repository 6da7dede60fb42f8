"""The CLIs of OpenCode's shape: OpenCode, and Kilo (a fork of it). No
command hooks; spanvisor's plugin is their hook, loaded the same way by
each (a ``plugin`` list of file URIs in their config, or in
``<PREFIX>_CONFIG_CONTENT``).

The plugin (``spanvisor/_assets/opencode/spanvisor-gate.js``) tells which
of them loaded it by the process id each sets in its own environment
(``OPENCODE_PID``, ``KILO_PID``: a variable it inherited cannot match its
own id) and blocks every call under any other host. It sends Claude Code's
stdin keys and reads ``{"decision": "allow|deny", "reason": …}``; any
other outcome (no answer, a non-zero status, a timeout, no spanvisor to
run) makes the plugin throw, which blocks the call. It hands its own limit
to the hook as ``--cli-timeout`` (600 s), so no settings file gives one. It
sends one ``SessionEnd`` per session when the CLI shuts down, saying how
its last turn ended (``last_turn``: ``complete``, ``error``,
``cancelled`` or ``open``; ``error``: the API's message). Their file
tools name their paths ``filePath``.

Their managed config folder (``/etc/opencode``, ``/etc/kilo``) is read
last and wins; plugin lists are not replaced but joined, lowest precedence
first, so a plugin named there runs after the user's and the repository's
and sees the arguments they left (OpenCode 1.18, proven in
tests/codingagents/test_gate_install.py). ``spanvisor gate install`` names
there a *locked* copy of the plugin (:func:`locked_plugin`): the CLI, the
spanvisor it runs and the hook's options are written in it, not read from
the agent's environment.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from spanvisor.clis.adapter import HookSetup, option
from spanvisor.clis.plugin import PluginAdapter

PLUGIN_FILE = "spanvisor-gate.js"
# What the shipped plugin reads from its environment, and what a locked copy
# says instead (each found exactly once in the shipped file).
_CLI_LINE = "const CLI = host()"
_BIN_LINE = 'const BIN = process.env.SPANVISOR_BIN || "spanvisor"'
_ASK_ARGS = '["hook", CLI, "--cli-timeout", String(LIMIT_S)]'
_END_ARGS = '["hook", CLI]'
LOCKED = "// locked by spanvisor gate install"


def shipped_plugin() -> str:
    from importlib import resources  # not on the gate's path: gate install and the launcher read it

    return resources.files("spanvisor").joinpath("_assets", "opencode", PLUGIN_FILE).read_text(encoding="utf-8")


def locked_plugin(command: str) -> str:
    """The plugin running ``command`` (``<absolute spanvisor> hook <cli>
    OPTIONS…``): the CLI, its binary and options written in, so nothing in
    the agent's environment (``SPANVISOR_BIN``) chooses what decides."""
    words = shlex.split(command)
    if len(words) < 3 or words[1] != "hook" or words[2] not in ("opencode", "kilo"):
        raise ValueError(f"not a command of the OpenCode plugin's gate: {command!r}")
    binary, cli, extra = words[0], words[2], words[3:]
    text = shipped_plugin()
    for old in (_CLI_LINE, _BIN_LINE, _ASK_ARGS, _END_ARGS):
        if text.count(old) != 1:
            raise ValueError(f"the shipped plugin changed: {old!r} is not in it once")
    more = "".join(", " + json.dumps(w) for w in extra)
    text = text.replace(_CLI_LINE, f"const CLI = {json.dumps(cli)} {LOCKED}")
    text = text.replace(_BIN_LINE, f"const BIN = {json.dumps(binary)} {LOCKED}")
    text = text.replace(_ASK_ARGS, _ASK_ARGS[:-1] + more + "]")
    return text.replace(_END_ARGS, _END_ARGS[:-1] + more + "]")


class OpenCodeShape(PluginAdapter):
    """What OpenCode and Kilo share; each says its names."""

    # Its environment's prefix: <PREFIX>_CONFIG_CONTENT, _CONFIG, _CONFIG_DIR,
    # _TEST_MANAGED_CONFIG_DIR.
    env_prefix: ClassVar[str]
    # Its folder under ~/.config, its folders in a repository, and the config
    # files it reads in each.
    config_folder: ClassVar[str]
    project_folders: ClassVar[tuple[str, ...]]
    config_files: ClassVar[tuple[str, ...]]
    # Its managed config folder (read last, wins).
    managed_folder: ClassVar[str]
    # The npm package of its plugins' types, which it installs into a folder
    # it loads plugins from unless the folder names it already.
    plugin_types: ClassVar[str]

    output = "spanvisor.clis.opencode_shape.output"
    stream = "spanvisor.clis.opencode_shape.stream"
    path_keys = frozenset({"filePath", "path", "patchText"})
    hook_timeout_s = 600.0

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry of its own to aim: the launcher reads what it prints.
        if "run" not in argv[1:2]:
            return argv, "passthrough"
        fmt = option(argv, "--format")
        if fmt is None:  # json lines; the launcher prints the text parts, as its text output does
            return [argv[0], "run", "--format", "json", *argv[2:]], f"{self.name}-text"
        return argv, f"{self.name}-json" if fmt == "json" else "passthrough"

    def stream_model(self, argv: Sequence[str], env: Mapping[str, str], cwd: str) -> str | None:
        from spanvisor.clis.opencode_shape import stream

        return stream.model_of(self, argv, env, cwd)

    def give_gate(self, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, str]:
        from spanvisor.clis.opencode_shape import launch

        return launch.give(self, shipped_plugin(), argv, env, folder)

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        folder = env.get(f"{self.env_prefix}_TEST_MANAGED_CONFIG_DIR") or self.managed_folder
        return Path(folder) / f"{self.config_folder}.json"

    def system_setup(self, command: str, timeout_s: int, place: Path | None = None) -> HookSetup | None:
        folder = (place or Path(self.managed_folder) / f"{self.config_folder}.json").parent
        doc = {"plugin": [(folder / PLUGIN_FILE).as_uri()]}
        where = f"its managed config ({folder}), whose plugins run after the user's and the repository's"
        return HookSetup(f"{self.config_folder}.json", json.dumps(doc, indent=2) + "\n", where)

    def system_companions(self, command: str, timeout_s: int) -> dict[str, str]:
        # It installs its plugin types with npm into each folder it loads
        # plugins from, unless the folder holds node_modules and a
        # package-lock.json naming them (any version): without a registry it
        # waits about 75 s, and the user cannot write here anyway.
        lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": {self.plugin_types: "0.0.0"}}}}
        return {
            PLUGIN_FILE: locked_plugin(command),
            "package-lock.json": json.dumps(lock) + "\n",
            "node_modules/.spanvisor": "",
        }

    def check(self, env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
        # It runs every tool ungated when a plugin fails to load (check.py).
        # Only where it is (on PATH, or a folder or setting of its own): Kilo
        # reads opencode.json too, and would say OpenCode's findings again.
        import shutil

        from spanvisor.clis.opencode_shape import check

        home = Path(env.get("HOME") or Path.home())
        own = [Path(env.get("XDG_CONFIG_HOME") or home / ".config") / self.config_folder, Path(self.managed_folder)]
        own += [cwd / d for d in self.project_folders] + [cwd / f for f in self.config_files]
        here = any(shutil.which(b, path=env.get("PATH")) for b in self.binaries) or any(p.exists() for p in own)
        if not here and not any(k.startswith(f"{self.env_prefix}_CONFIG") for k in env):
            return [], [], []
        return check.problems(self, env, cwd)


__all__ = ["LOCKED", "PLUGIN_FILE", "OpenCodeShape", "locked_plugin", "shipped_plugin"]
