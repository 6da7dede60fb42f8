"""``spanvisor gate install``: the gate's hook in each CLI's system-wide settings.

Run as root once per machine (or per image). For every CLI whose adapter
names a place it reads for every user, which no user or repository
overrides (:meth:`spanvisor.clis.adapter.Adapter.system_settings`: Claude
Code's managed settings, Codex's managed requirements, Gemini CLI's and
Qwen Code's system settings, OpenCode's managed config, Copilot CLI's
managed settings with its policy hook beside them), it writes the
gate's hook there in the CLI's own format
(:meth:`~spanvisor.clis.adapter.Adapter.system_setup`): this
installation's absolute ``spanvisor``, and either ``--gate SOCKET`` (the
system gate, ``spanvisor gate serve``, deciding under a user of its own)
or ``--locked --policy FILE``. What the file holds already stays: other
keys, other hooks; an earlier ``spanvisor hook`` entry is replaced, so a
second run changes nothing. A JSON file is merged; a TOML file (Codex's)
gets the gate's lines in two marked blocks, its top-level keys first and
its hook tables last, as TOML needs (Python reads TOML but writes none:
the rest of the file is kept byte for byte). A file that is not what the
CLI reads (not JSON or TOML, not an object, or a TOML file that would not
read back with the gate's hook in it) is left alone and said. The file is
written whole, readable by everyone and writable by its owner only.

OpenCode's gate is a plugin file, not a hook entry: its managed
``opencode.json`` names a locked copy written beside it (the spanvisor it
runs and the hook's options in the file, never read from the agent's
environment), an earlier gate's entry replaced and the other plugins kept.

Copilot CLI's gate is a policy hook file of its own too
(``/etc/github-copilot/policy.d``), naming an absolute program and its
arguments; its managed settings get ``allowManagedHooksOnly``.

A CLI with no such place (Cline) is named on every run, with the folders
it runs hooks from instead (its user's and the repository's: its gate,
``spanvisor assets export``, holds against mistakes only).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spanvisor.cli import hook_entries
from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter

MODE = 0o644
FOLDER_MODE = 0o755
# What names the gate's OpenCode plugin in a plugin list.
PLUGIN_MARK = "spanvisor-gate"


def command_for(cli: str, socket: str | None, policy: str, binary: str | None = None) -> str:
    """The hook's command: through the system gate's socket, else locked to ``policy``."""
    if socket is not None:
        return shlex.join([binary or hook_entries.spanvisor_path(), "hook", cli, "--gate", socket])
    return hook_entries.gate_command(cli, binary, policy)


def merged(existing: Mapping[str, Any], setup: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` settings with ``setup``'s hooks in place of any earlier
    ``spanvisor hook`` entries (Claude Code's layout: ``hooks.<event>`` a
    list of ``{"matcher", "hooks": [...]}``) and ``setup``'s other keys
    (Claude Code's ``allowManagedHooksOnly``) set; everything else kept. An
    event whose value is not a list is not hooks the CLI would run: ours
    replace it."""
    out = dict(existing)
    out.update((k, v) for k, v in setup.items() if k not in ("hooks", "plugin"))
    if isinstance(setup.get("plugin"), list):  # OpenCode's plugins: the others kept, an earlier gate's replaced
        earlier = out.get("plugin")
        others = (
            [p for p in earlier if not (isinstance(p, str) and PLUGIN_MARK in p)] if isinstance(earlier, list) else []
        )
        out["plugin"] = [*others, *setup["plugin"]]
    if "hooks" not in setup:
        return out
    hooks = dict(out.get("hooks") or {}) if isinstance(out.get("hooks"), Mapping) else {}
    for event, groups in setup.get("hooks", {}).items():
        if not isinstance(groups, list):  # a switch beside the events (Factory Droid's hooksDisabled)
            hooks[event] = groups
            continue
        kept = []
        earlier = hooks.get(event)
        for group in earlier if isinstance(earlier, list) else []:
            inner = group.get("hooks") if isinstance(group, Mapping) else None
            if isinstance(inner, list):
                others = [e for e in inner if not _ours(e)]
                if others:
                    kept.append({**group, "hooks": others})
            else:
                kept.append(group)
        hooks[event] = [*kept, *groups]
    out["hooks"] = hooks
    return out


def _ours(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    try:
        words = shlex.split(str(entry.get("command") or ""))
    except ValueError:
        return False
    return len(words) >= 2 and os.path.basename(words[0]) == "spanvisor" and words[1] == "hook"


# The marks around the gate's lines in a TOML file: what a later run replaces.
TOML_MARKS = ("# spanvisor gate install: begin", "# spanvisor gate install: end")


def toml_with(text: str, setup: str) -> str:
    """``text`` (a TOML file's) with the gate's ``setup`` in it: any earlier
    marked blocks out, then the setup's top-level keys in a marked block at
    the top (before the file's first table, as TOML needs) and its tables in
    one at the end. The result reads back with the setup's keys and hooks,
    or :class:`ValueError`."""
    import tomllib

    begin, end = TOML_MARKS
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == begin:
            inside = True
        elif line.strip() == end:
            inside = False
        elif not inside:
            kept.append(line)
    rest = "\n".join(kept).strip("\n")
    try:
        held = tomllib.loads(rest)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"it is not TOML ({exc})") from None
    lines = setup.strip("\n").splitlines()
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    # A top-level key the file already sets alike is not said twice (TOML forbids it).
    said = [ln for ln in lines[:first_table] if ln.strip() and not held.items() >= tomllib.loads(ln).items()]
    keys, tables = "\n".join(said), "\n".join(lines[first_table:]).strip("\n")
    parts = [f"{begin}\n{keys}\n{end}"] if keys else []
    parts += [rest] if rest else []
    parts += [f"{begin}\n{tables}\n{end}"] if tables else []
    new = "\n\n".join(parts) + "\n"
    try:
        doc, wanted = tomllib.loads(new), tomllib.loads(setup)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the gate's lines would not read back as TOML there ({exc})") from None
    for key, value in wanted.items():
        if key != "hooks" and doc.get(key) != value:
            raise ValueError(f"it sets {key} otherwise")
    ours = {c for e in wanted.get("hooks", {}).values() for g in e for c in (h.get("command") for h in g["hooks"])}
    found = {
        h.get("command")
        for groups in (doc.get("hooks") or {}).values()
        if isinstance(groups, list)
        for g in groups
        if isinstance(g, dict)
        for h in g.get("hooks") or ()
        if isinstance(h, dict)
    }
    if not ours <= found:
        raise ValueError("its hooks would not hold the gate's")
    return new


def install_one(adapter: Adapter, path: Path, command: str, timeout_s: int, place: Path | None = None) -> str:
    """Write ``adapter``'s hook into ``path`` (``place``: where the CLI will
    read it, when ``path`` is under ``--root``), and the files beside it
    that its gate needs; what was done, in words. :class:`ValueError` when
    the file there is not settings it can add to."""
    setup = adapter.system_setup(command, timeout_s, place or path)
    if setup is None:
        raise ValueError("its hook is a file of its own: spanvisor assets export")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    if path.suffix == ".toml":
        try:
            new = toml_with(text or "", setup.text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}; left as it is") from None
    else:
        new = _json_with(path, text, json.loads(setup.text))
    # The files its settings name first, once the settings are known to take them.
    said = [_write(path.parent / rel, body) for rel, body in adapter.system_companions(command, timeout_s).items()]
    if new == text:
        return f"{path}: already current" + "".join(f"; {s}" for s in said if s)
    _put(path, new)
    return f"{path}: {'written' if text is None else 'updated'}" + "".join(f"; {s}" for s in said if s)


def _write(path: Path, text: str) -> str:
    """A file of the gate's own (OpenCode's plugin, Copilot CLI's policy
    hook): written whole when it differs, or when it is not a regular file
    of this user's that only it may write (Copilot CLI skips such a policy
    file, and then runs the call)."""
    try:
        st = path.lstat()
        mine = stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022
        if mine and path.read_text(encoding="utf-8") == text:
            return ""
    except (OSError, UnicodeDecodeError):
        pass
    _put(path, text)
    return "" if path.name.startswith(".") else f"{path.name} written"


def _put(path: Path, text: str) -> None:
    # Each folder made here may be entered by every user (mkdir's mode is cut
    # by the umask: under 027 a CLI run by another user could not read the
    # file, and Factory Droid then runs no hook at all, the gate's included).
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, FOLDER_MODE)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_with(path: Path, text: str | None, wanted: Mapping[str, Any]) -> str:
    existing: Any = {}
    if text is not None and text.strip():
        try:
            existing = json.loads(text)
        except ValueError:
            raise ValueError(f"{path} is not JSON; left as it is") from None
        if not isinstance(existing, dict):
            raise ValueError(f"{path} is not a JSON object; left as it is")
    return json.dumps(merged(existing, wanted), indent=2) + "\n"


def open_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that users other than their owner may
    write: whoever can write one can replace the settings (Gemini CLI then
    skips its system settings altogether)."""
    out = []
    for folder in path.parents:
        try:
            mode = folder.stat().st_mode
        except OSError:
            continue  # not made yet: made by this install, 0755
        if mode & 0o022:
            out.append(folder)
    return out


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    e = os.environ if env is None else env
    names = args.cli or list(registry.names())
    policy = os.path.abspath(args.policy) if args.policy else hook_entries.POLICY_PATH
    failed = 0
    for name in names:
        adapter = registry.get(name)
        if adapter is None:
            print(f"✗ {name}: no coding-agent CLI is called so", file=sys.stderr)
            failed += 1
            continue
        place = adapter.system_settings(e)
        if place is None:
            # Said on every run: a team that installs the gate for every user
            # must learn that this CLI's gate is not among them.
            where = ", ".join(adapter.hook_folders) or "the user's settings"
            print(
                f"⚠ {adapter.title}: no system-wide place spanvisor relies on, nothing written; it runs hooks "
                f"from {where}, which its user and the repository write: its gate (spanvisor assets export DIR) "
                "holds against mistakes, not a hostile agent"
            )
            continue
        path = Path(args.root + str(place)) if args.root else place
        try:
            said = install_one(adapter, path, command_for(name, args.socket, policy), hook_entries.TIMEOUT_S, place)
        except (OSError, ValueError) as exc:
            print(f"✗ {adapter.title}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"✓ {adapter.title}: {said}")
        for folder in open_folders(path):
            print(f"⚠ {adapter.title}: {folder} is writable by others than its owner: they can replace {path}")
    return 1 if failed else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", help="the system gate's socket (spanvisor gate serve): hooks ask it (--gate SOCKET)")
    p.add_argument(
        "--policy",
        help=f"without --socket: the locked hook's policy file (default: {hook_entries.POLICY_PATH})",
    )
    p.add_argument("--cli", action="append", metavar="CLI", help="only this CLI (again for more; default: every one)")
    p.add_argument("--root", default="", help="write under this folder instead of / (an image being built)")


__all__ = [
    "MODE",
    "TOML_MARKS",
    "add_arguments",
    "command_for",
    "install_one",
    "merged",
    "open_folders",
    "run",
    "toml_with",
]
