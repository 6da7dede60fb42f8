"""Claude Code's ``http`` hook: one ``PreToolUse`` entry of type ``http``
merged into the ``--settings`` it was given (a file or JSON), or a
``--settings`` of its own, with ``"onFailure": "block"``: a listener that
is gone, slow past the hook's timeout or answering anything but a decision
blocks the call (checked with the pinned Claude Code; without
``onFailure`` it would run it).

The settings go to Claude Code in a file (mode 0600) of the launcher's
private folder, never on its command line, which every local user can
read (``/proc/<pid>/cmdline``): the URL holds the listener's secret.
"""

from __future__ import annotations

import json
import os
from typing import Any

SETTINGS_FILE = "claude-http-gate.json"


def with_hook(argv: list[str], url: str, timeout_s: float, folder: str) -> list[str] | None:
    """``argv`` with the hook merged into its settings, written under
    ``folder``; None when the given settings cannot be read (they are left
    to Claude Code)."""
    entry = {"type": "http", "url": url, "timeout": int(timeout_s), "onFailure": "block"}
    group = {"matcher": "*", "hooks": [entry]}
    rest, given = _without_settings(argv[1:])
    doc: dict[str, Any] | None = {}
    if given is not None:
        doc = _load(given)
    if doc is None:
        return None
    hooks = doc.setdefault("hooks", {}) if isinstance(doc.get("hooks", {}), dict) else {}
    doc["hooks"] = hooks
    pre = hooks.get("PreToolUse")
    hooks["PreToolUse"] = [*(pre if isinstance(pre, list) else []), group]
    path = os.path.join(folder, SETTINGS_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return [argv[0], "--settings", path, *rest]


def _without_settings(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without its ``--settings`` option, and that option's value."""
    out: list[str] = []
    given: str | None = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--settings" and i + 1 < len(argv):
            given = argv[i + 1]
            i += 2
            continue
        if a.startswith("--settings="):
            given = a.split("=", 1)[1]
            i += 1
            continue
        out.append(a)
        i += 1
    return out, given


def _load(given: str) -> dict[str, Any] | None:
    """A ``--settings`` value (JSON, or a file of it); None when it cannot
    be read as a JSON object."""
    text = given
    if not given.lstrip().startswith("{"):
        try:
            with open(os.path.expanduser(given), encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


__all__ = ["SETTINGS_FILE", "with_hook"]
