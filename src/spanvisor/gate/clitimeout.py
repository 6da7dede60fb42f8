"""The hook timeout a CLI's own settings give the gate's hook.

The gate must answer before the CLI gives up on it (every CLI then runs
the call), so it reads the timeout where the CLI reads it, instead of
trusting ``--cli-timeout`` or the CLI's default alone: Claude Code's
settings files (the user's, the project's, its local ones, the managed
ones), Codex's ``config.toml`` (``$CODEX_HOME``'s and the project's),
Gemini CLI's ``settings.json`` (the user's, the project's, the system's),
Qwen Code's and Copilot CLI's (:mod:`.clitimeout_more`),
plus any file named in ``SPANVISOR_CLI_SETTINGS`` (the launcher names the
``--settings`` file a Claude Code session was started with). Every hook
entry of the permission events whose command runs ``spanvisor`` counts,
and the shortest wins (an entry without a timeout counts as the CLI's
default): a deadline too early costs a person some time, one too late lets
the call run. Standard library only; a file that cannot be read is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanvisor.gate import clitimeout_more as more
from spanvisor.gate.deadline import CLI_TIMEOUT_DEFAULT

ENV_SETTINGS = "SPANVISOR_CLI_SETTINGS"
# The hook events each CLI runs the gate for.
EVENTS = {
    "claude-code": ("PreToolUse", "PermissionRequest"),
    "codex": ("PreToolUse",),
    "gemini": ("BeforeTool",),
    "qwen": ("PreToolUse",),
}
# The CLI each binary is (the launcher's first word after its --).
BINARIES = {
    "claude": "claude-code",
    "codex": "codex",
    "gemini": "gemini",
    "qwen": "qwen",
    "copilot": "copilot",
    "opencode": "opencode",
    "cline": "cline",
}
# A settings file larger than this is not read (nobody writes one).
MAX_SETTINGS = 1024 * 1024


def limit(cli: str, given: float | None, env: Mapping[str, str], cwd: str | None) -> float | None:
    """The shortest of ``given`` (``--cli-timeout``) and the timeouts the
    CLI's settings give the gate's hook; None when neither says."""
    found = [t for t in configured(cli, env, cwd or _cwd())]
    if given is not None and given > 0:
        found.append(given)
    return min(found) if found else None


def configured(cli: str, env: Mapping[str, str], cwd: str) -> list[float]:
    """The timeouts (seconds) of the gate's hook entries in ``cli``'s settings."""
    out: list[float] = []
    default = CLI_TIMEOUT_DEFAULT.get(cli, 600.0)
    unit = 1000.0 if cli == "gemini" else 1.0
    for path in settings_files(cli, env, cwd):
        doc = _read(path)
        if cli == "copilot":
            out.extend(_copilot(doc, default))
            continue
        for entry in _entries(doc, EVENTS.get(cli, ())):
            command = entry.get("command")
            text = " ".join(str(c) for c in command) if isinstance(command, list) else command
            if not isinstance(text, str) or "spanvisor" not in text or "hook" not in text:
                continue
            if "--at-terminal" in text:  # a notice (the person at the terminal decides): not the gate's deadline
                continue
            raw = entry.get("timeout")
            if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
                out.append(more.qwen_seconds(float(raw)) if cli == "qwen" else float(raw) / unit)
            else:
                out.append(default)
    return out


def _copilot(doc: Any, default: float) -> list[float]:
    out: list[float] = []
    for command, raw in more.copilot_entries(doc):
        if "spanvisor" not in command or "hook" not in command:
            continue
        ok = isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0
        out.append(float(raw) if ok else default)
    return out


def settings_files(cli: str, env: Mapping[str, str], cwd: str) -> list[Path]:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    named = [Path(p) for p in (env.get(ENV_SETTINGS) or "").split(os.pathsep) if p]
    if cli == "claude-code":
        user = Path(env.get("CLAUDE_CONFIG_DIR") or home / ".claude")
        project = Path(env.get("CLAUDE_PROJECT_DIR") or cwd) / ".claude"
        managed = (
            Path("/Library/Application Support/ClaudeCode/managed-settings.json"),
            Path("/etc/claude-code/managed-settings.json"),
        )
        return [user / "settings.json", project / "settings.json", project / "settings.local.json", *managed, *named]
    if cli == "codex":
        codex_home = Path(env.get("CODEX_HOME") or home / ".codex")
        return [codex_home / "config.toml", Path(cwd) / ".codex" / "config.toml", *named]
    if cli == "qwen":
        return [*more.qwen_files(env, home, cwd), *named]
    if cli == "copilot":
        return [*more.copilot_files(env, home, cwd), *named]
    if cli not in ("gemini",):
        return named  # OpenCode (the plugin gives --cli-timeout), Cline (fixed)
    system = Path(env.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH") or "/etc/gemini-cli/settings.json")
    return [home / ".gemini" / "settings.json", Path(cwd) / ".gemini" / "settings.json", system, *named]


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
    name = os.path.basename(rest[0]) if rest else ""
    return BINARIES.get(name)


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


def _read(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SETTINGS + 1)
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


def _entries(doc: Any, events: tuple[str, ...]) -> Iterator[dict[str, Any]]:
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
    "settings_files",
    "short_for",
]
