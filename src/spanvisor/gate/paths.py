"""Every file path a tool call's input names.

A policy's path rules must see all of them: ``read_many_files`` takes a
list (``{"paths": ["src/a.py", "/etc/shadow"]}``), Gemini CLI's file tools
say ``dir_path``, OpenCode's ``filePath``, a patch names its files inside
its text (Codex's ``*** Update File: …``, a unified diff's ``+++ b/…``).
So the input is walked (lists and nested objects too, to a bounded depth)
for the keys tools use for paths, and the patch texts are read for the
files they touch. Each is a subject of its own: a deny rule that matches
any of them denies the call, and the call is allowed only when every one
is.

Keys are compared in one spelling (lower case, without ``_`` and ``-``):
a CLI that names its path ``filePath`` where another says ``file_path``
is read the same, so a path rule written for one CLI holds for all of
them. Each CLI's adapter names the keys its file tools use
(``path_keys``); those are read too, so a CLI added by a package needs no
change here (``tests/gate/test_trust_paths.py`` denies a read of a denied
file under each key of each built-in CLI).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Keys whose string (or list of strings) value is a path a tool acts on.
PATH_KEYS = frozenset(
    {
        "file_path",
        "absolute_path",
        "path",
        "paths",
        "notebook_path",
        "dir_path",
        "directory",
        "dir",
        "file",
        "files",
        "filename",
        "filepath",
        "target_file",
        "source",
        "destination",
        "old_path",
        "new_path",
        "include",  # read_many_files reads what it names, globs or paths
        "file_paths",  # Cline's read_files
        "new_file_path",
        "old_file_path",
        "filePath",
        "absolutePath",
        "dirPath",
        "notebookPath",
        "targetFile",
        "directory_path",  # Factory Droid's LS
        "folder",  # Factory Droid's Glob: where it looks
    }
)
# Keys whose text may be a patch naming the files it changes.
PATCH_KEYS = frozenset({"patch", "input", "diff", "changes", "content_patch", "patchText"})


def spelling(key: str) -> str:
    """A key in the one spelling keys are compared in (``filePath``,
    ``file_path`` and ``file-path`` are one key)."""
    return key.replace("_", "").replace("-", "").casefold()


_PATH = frozenset(spelling(k) for k in PATH_KEYS)
_PATCH = frozenset(spelling(k) for k in PATCH_KEYS)
# Deeper than any tool's own input: past it, nothing more is read.
MAX_DEPTH = 8
_PATCH_LINE = re.compile(
    r"^(?:\*\*\* (?:Add|Update|Delete) File: (?P<apply_patch>.+)"
    r"|\*\*\* Move to: (?P<move>.+)"
    r"|(?:---|\+\+\+) (?:[ab]/)?(?P<unified>[^\t\n]+)"
    r"|diff --git a/(?P<git_a>\S+) b/(?P<git_b>\S+)"
    r"|rename (?:from|to) (?P<rename>.+)"
    r"|(?:new|deleted) file mode \d+)$",
    re.MULTILINE,
)


def named(tool_input: dict[str, Any], also: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The paths ``tool_input`` names, in order, each once (``also``: more
    keys that name paths, a CLI's own, in any spelling; a key whose text is
    a patch is read as a patch, never as a path)."""
    found: dict[str, None] = {}
    keys = _PATH | (frozenset(spelling(k) for k in also) - _PATCH) if also else _PATH
    for path in _walk(tool_input, 0, keys):
        if path and path != "/dev/null":
            found.setdefault(path, None)
    return tuple(found)


def _walk(value: Any, depth: int, keys: frozenset[str]) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                continue
            known = spelling(key)
            if known in keys:
                if isinstance(item, str):
                    yield item
                elif isinstance(item, list):
                    yield from (x for x in item if isinstance(x, str))
            if isinstance(item, str) and (known in _PATCH or item.startswith("*** Begin Patch")):
                yield from patched(item)
            elif isinstance(item, dict | list):
                yield from _walk(item, depth + 1, keys)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str) and item.startswith("*** Begin Patch"):
                yield from patched(item)
            elif isinstance(item, dict | list):
                yield from _walk(item, depth + 1, keys)


def patched(text: str) -> Iterator[str]:
    """The files a patch (Codex's ``apply_patch`` format or a unified /
    git diff) adds, changes, deletes or moves."""
    for m in _PATCH_LINE.finditer(text):
        for group in ("apply_patch", "move", "unified", "git_a", "git_b", "rename"):
            value = m.group(group)
            if value:
                yield value.strip()


__all__ = ["MAX_DEPTH", "PATCH_KEYS", "PATH_KEYS", "named", "patched", "spelling"]
