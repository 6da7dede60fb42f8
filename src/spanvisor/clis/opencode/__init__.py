"""OpenCode: no command hooks; spanvisor's plugin is its hook.

The plugin (``spanvisor/_assets/opencode/spanvisor-gate.js``) sends Claude
Code's stdin keys and reads ``{"decision": "allow|deny", "reason": …}``;
any other outcome (no answer, a non-zero status, a timeout, no spanvisor
to run) makes the plugin throw, which blocks the call. It hands its own
limit to the hook as ``--cli-timeout`` (600 s), so no settings file gives
one. It sends one ``SessionEnd`` per session when OpenCode shuts down,
saying how its last turn ended (``last_turn``: ``complete``, ``error``,
``cancelled`` or ``open``; ``error``: the API's message). Its file tools
name their paths ``filePath``.

Its managed config folder (``/etc/opencode``, or
``OPENCODE_TEST_MANAGED_CONFIG_DIR``) is read last and wins; plugin lists
are not replaced but joined, lowest precedence first, so a plugin named
there runs after the user's and the repository's and sees the arguments
they left (1.18, proven in tests/codingagents/test_gate_install.py).
``spanvisor gate install`` names there a *locked* copy of the plugin
(:func:`locked_plugin`): the spanvisor it runs and the hook's options are
written in it, not read from the agent's environment.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path

from spanvisor.clis.adapter import HookSetup, option
from spanvisor.clis.plugin import PluginAdapter

PLUGIN_FILE = "spanvisor-gate.js"
# What the shipped plugin reads from its environment, and what a locked copy
# says instead (each found exactly once in the shipped file).
_BIN_LINE = 'const BIN = process.env.SPANVISOR_BIN || "spanvisor"'
_ASK_ARGS = '["hook", "opencode", "--cli-timeout", String(LIMIT_S)]'
_END_ARGS = '["hook", "opencode"]'


def shipped_plugin() -> str:
    from importlib import resources  # not on the gate's path: gate install and the launcher read it

    return resources.files("spanvisor").joinpath("_assets", "opencode", PLUGIN_FILE).read_text(encoding="utf-8")


def locked_plugin(command: str) -> str:
    """The plugin running ``command`` (``<absolute spanvisor> hook opencode
    OPTIONS…``): its binary and options written in, so nothing in the
    agent's environment (``SPANVISOR_BIN``) chooses what decides."""
    words = shlex.split(command)
    if len(words) < 3 or words[1:3] != ["hook", "opencode"]:
        raise ValueError(f"not a command of OpenCode's gate: {command!r}")
    binary, extra = words[0], words[3:]
    text = shipped_plugin()
    for old in (_BIN_LINE, _ASK_ARGS, _END_ARGS):
        if text.count(old) != 1:
            raise ValueError(f"the shipped plugin changed: {old!r} is not in it once")
    more = "".join(", " + json.dumps(w) for w in extra)
    text = text.replace(_BIN_LINE, f"const BIN = {json.dumps(binary)} // locked by spanvisor gate install")
    text = text.replace(_ASK_ARGS, _ASK_ARGS[:-1] + more + "]")
    return text.replace(_END_ARGS, _END_ARGS[:-1] + more + "]")


class OpenCode(PluginAdapter):
    name = "opencode"
    title = "OpenCode"
    binaries = ("opencode",)
    services = ("opencode",)
    namespace = "opencode"
    output = f"{__name__}.output"
    gate_assets = (
        "spanvisor",
        "_assets/opencode",
        "OpenCode's gate plugin: name its file:// URI in opencode.json's plugin list (spanvisor check looks)",
    )
    stream = f"{__name__}.stream"
    path_keys = frozenset({"filePath", "path", "patchText"})
    hook_timeout_s = 600.0

    def output_plan(self, argv: list[str]) -> tuple[list[str], str]:
        # No telemetry of its own to aim: the launcher reads what it prints.
        if "run" not in argv[1:2]:
            return argv, "passthrough"
        fmt = option(argv, "--format")
        if fmt is None:  # json lines; the launcher prints the text parts, as its text output does
            return [argv[0], "run", "--format", "json", *argv[2:]], "opencode-text"
        return argv, "opencode-json" if fmt == "json" else "passthrough"

    def give_gate(self, argv: list[str], env: dict[str, str], folder: str) -> tuple[list[str] | None, str | None, str]:
        from spanvisor.clis.opencode import launch

        return launch.give(shipped_plugin(), argv, env, folder)

    def system_settings(self, env: Mapping[str, str]) -> Path | None:
        folder = env.get("OPENCODE_TEST_MANAGED_CONFIG_DIR") or "/etc/opencode"
        return Path(folder) / "opencode.json"

    def system_setup(self, command: str, timeout_s: int, place: Path | None = None) -> HookSetup | None:
        folder = (place or Path("/etc/opencode/opencode.json")).parent
        doc = {"plugin": [(folder / PLUGIN_FILE).as_uri()]}
        where = f"its managed config ({folder}), whose plugins run after the user's and the repository's"
        return HookSetup("opencode.json", json.dumps(doc, indent=2) + "\n", where)

    def system_companions(self, command: str, timeout_s: int) -> dict[str, str]:
        # OpenCode installs its plugin types with npm into each folder it
        # loads plugins from, unless the folder holds node_modules and a
        # package-lock.json naming them (any version): without a registry
        # it waits about 75 s, and the user cannot write here anyway.
        lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": {"@opencode-ai/plugin": "0.0.0"}}}}
        return {
            PLUGIN_FILE: locked_plugin(command),
            "package-lock.json": json.dumps(lock) + "\n",
            "node_modules/.spanvisor": "",
        }

    def check(self, env: Mapping[str, str], cwd: Path) -> tuple[list[str], list[str], list[str]]:
        # It runs every tool ungated when a plugin fails to load (check.py).
        from spanvisor.clis.opencode import check

        return check.problems(env, cwd)


ADAPTER = OpenCode()
