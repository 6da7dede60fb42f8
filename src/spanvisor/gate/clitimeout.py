"""The hook timeout a CLI's own settings give the gate's hook.

The gate must answer before the CLI gives up on it (every CLI then runs
the call), so it reads the timeout where the CLI reads it, instead of
trusting ``--cli-timeout`` or the CLI's default alone: the settings files
its adapter names (:meth:`spanvisor.clis.adapter.Adapter.settings_files`:
the user's, the project's, the system's or managed ones), plus any file
named in ``SPANVISOR_CLI_SETTINGS`` (the launcher names the ``--settings``
file a Claude Code session was started with). Every hook entry of the
permission events whose command runs ``spanvisor hook`` counts, and the
shortest wins (an entry without a timeout counts as the CLI's default): a
deadline too early costs a person some time, one too late lets the call
run. Standard library only; a file that cannot be read is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.clis import registry
from spanvisor.clis.adapter import MAX_SETTINGS
from spanvisor.gate.readlimit import read_at_most

ENV_SETTINGS = "SPANVISOR_CLI_SETTINGS"


def limit(cli: str, given: float | None, env: Mapping[str, str], cwd: str | None) -> float | None:
    """The shortest of ``given`` (``--cli-timeout``) and the timeouts the
    CLI's settings give the gate's hook; None when neither says."""
    found = [t for t in configured(cli, env, cwd or _cwd())]
    if given is not None and given > 0:
        found.append(given)
    return min(found) if found else None


def configured(cli: str, env: Mapping[str, str], cwd: str) -> list[float]:
    """The timeouts (seconds) of the gate's hook entries in ``cli``'s settings."""
    adapter = registry.get(cli)
    if adapter is None:
        return []
    out: list[float] = []
    for path in settings_files(cli, env, cwd):
        for command, timeout in adapter.hook_timeouts(_read(path)):
            if "spanvisor" not in command or "hook" not in command:
                continue
            if "--at-terminal" in command:  # a notice (the person at the terminal decides): not the gate's deadline
                continue
            out.append(adapter.hook_timeout_s if timeout is None else timeout)
    return out


def settings_files(cli: str, env: Mapping[str, str], cwd: str) -> list[Path]:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    named = [Path(p) for p in (env.get(ENV_SETTINGS) or "").split(os.pathsep) if p]
    adapter = registry.get(cli)
    return [*(adapter.settings_files(env, home, cwd) if adapter is not None else ()), *named]


def launched_settings(argv: list[str], where: str) -> list[str]:
    """The settings a launcher's CLI was started with (``claude --settings
    FILE`` or ``--settings '{json}'``, after the launcher's ``--``), as
    files the hooks can read: a path made absolute, inline JSON written to
    ``where`` (a private directory)."""
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    out: list[str] = []
    for i, a in enumerate(rest):
        value = a.split("=", 1)[1] if a.startswith("--settings=") else None
        if a == "--settings" and i + 1 < len(rest):
            value = rest[i + 1]
        if not value:
            continue
        if value.lstrip().startswith("{"):
            path = os.path.join(where, f"settings-{len(out)}.json")
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(value)
            except OSError:
                continue
            out.append(path)
        else:
            out.append(os.path.abspath(value))
    return out


def launched_cli(argv: list[str]) -> str | None:
    """Which CLI a launcher runs (the first word after its ``--``)."""
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    adapter = registry.by_binary(rest[0]) if rest else None
    return adapter.name if adapter is not None else None


def short_for(cli: str, policy_timeout_s: float, env: Mapping[str, str], cwd: str) -> str | None:
    """What to tell the user once when the CLI's hook timeout for the gate
    (as its settings give it) leaves a person less than the policy's
    ``timeout``; None when it does not."""
    from spanvisor.gate.deadline import margin_s

    found = configured(cli, env, cwd)
    if not found:
        return None
    limit = min(found)
    if limit - margin_s(limit) >= policy_timeout_s:
        return None
    left = max(0.0, limit - margin_s(limit))
    return (
        f"the CLI's hook timeout for `spanvisor hook` is {limit:g} s: a person gets {left:g} s to decide, "
        f"not the policy's {policy_timeout_s:g} s (raise the hook's timeout in the CLI's settings)"
    )


def read_settings(path: Path) -> Any:
    """A CLI's settings file (JSON, or TOML by its suffix); None when it cannot be read."""
    return _read(path)


def _read(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = read_at_most(f, MAX_SETTINGS)
    except OSError:
        return None
    if len(data) > MAX_SETTINGS:
        return None
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(data.decode("utf-8"))
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "/"


__all__ = [
    "ENV_SETTINGS",
    "configured",
    "launched_cli",
    "launched_settings",
    "limit",
    "read_settings",
    "settings_files",
    "short_for",
]
