"""The gate's hook command as an operator installs it, and ``spanvisor
check``'s look at the gate entries in every CLI's settings files.

What makes an entry weaker than the gate is the adapters' to say
(:mod:`spanvisor.clis.checks` for the command, whatever the CLI; each
adapter's ``entry_weaknesses`` for the rest of its entry, as Claude Code's
``"onFailure": "block"``); :func:`gate_command` writes a command with
neither weakness (``spanvisor assets export`` and ``spanvisor gate
install`` write it into each CLI's settings).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping

# Where the exported entry looks for the operator's policy (root-owned,
# beside Claude Code's managed settings: not the agent's to write).
POLICY_PATH = "/etc/spanvisor/hook-policy.toml"
TIMEOUT_S = 900


def spanvisor_path() -> str:
    """The absolute path of this installation's ``spanvisor`` command."""
    beside = os.path.join(os.path.dirname(sys.executable), "spanvisor")
    if os.access(beside, os.X_OK):
        return os.path.abspath(beside)
    found = shutil.which("spanvisor")
    return os.path.abspath(found) if found else os.path.abspath(sys.argv[0])


def gate_command(cli: str, binary: str | None = None, policy: str = POLICY_PATH) -> str:
    """The gate's hook command for ``cli``: this installation's absolute
    path, ``--locked``, the operator's policy."""
    return shlex.join([binary or spanvisor_path(), "hook", cli, "--locked", "--policy", policy])


def installed_findings(env: Mapping[str, str], cwd: str) -> tuple[list[str], list[str]]:
    """``spanvisor check``'s look at every CLI's settings that its
    adapter names (the user's, the project's, the system's): for each gate
    entry, what makes it fail open (a command that is not an absolute path,
    or not there; one that takes its policy from its environment), and whose
    file it is (a file its user may change protects against mistakes, not
    against a hostile agent of that user); and a CLI on PATH whose settings
    hold no gate at all. (warnings, what passed). A gate of a CLI's own
    beyond its settings (OpenCode's plugin) is its adapter's ``check``."""
    from pathlib import Path

    from spanvisor.clis import registry
    from spanvisor.clis.checks import command_weaknesses, is_gate, whose
    from spanvisor.gate.clitimeout import read_settings, settings_files

    clean = {k: v for k, v in env.items() if not k.startswith("SPANVISOR_")}
    warned: list[str] = []
    ok: list[str] = []
    for adapter in registry.every():
        on_path = [b for b in adapter.binaries if shutil.which(b, path=env.get("PATH"))]
        if adapter.hook_folders and on_path:  # Cline: nowhere out of its user's reach
            warned.append(
                f"{adapter.title} ({on_path[0]} on PATH) runs hooks from places its user and the repository "
                f"write ({', '.join(adapter.hook_folders)}): its gate guards against mistakes, not a hostile agent"
            )
        if adapter.hook_setup("spanvisor hook", TIMEOUT_S) is None:
            continue  # its gate is a file of its own, not in settings: its adapter's check
        gated = False
        for path in settings_files(adapter.name, clean, cwd):
            doc = read_settings(path)
            for command, _ in adapter.hook_timeouts(doc):
                if not is_gate(command):
                    continue
                gated = True
                where = f"{adapter.title}'s hook in {path}"
                weak = command_weaknesses(command) + adapter.entry_weaknesses(doc, command)
                warned += [f"{where}: {w}" for w in weak]
                if not weak:
                    ok.append(f"{where}: an absolute path, locked{whose(Path(path))}")
        if on_path and not gated:
            warned.append(
                f"{adapter.title} ({on_path[0]} on PATH): none of its settings runs the gate, so outside "
                f"`spanvisor run` its tool calls are not asked (spanvisor gate install, or spanvisor assets export)"
            )
    return warned, ok


__all__ = ["POLICY_PATH", "gate_command", "installed_findings", "spanvisor_path"]
