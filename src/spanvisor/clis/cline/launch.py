"""``spanvisor run --gate`` for Cline: 3.0.65 runs its ``PreToolUse`` hook
from ``~/.cline/hooks`` only (a hook given with ``--hooks-dir`` is never
run: measured, every call ran), so the launcher checks that the user's hook
is spanvisor's and refuses to start Cline when it is not."""

from __future__ import annotations

import os

HOOK = "PreToolUse"


def give(shipped: bytes, argv: list[str], env: dict[str, str]) -> tuple[list[str] | None, str | None, None]:
    """``argv`` when the user's hook is ``shipped`` and executable; else no
    ``argv`` (Cline must not start) and why."""
    home = env.get("HOME") or os.path.expanduser("~")
    path = os.path.join(home, ".cline", "hooks", HOOK)
    try:
        with open(path, "rb") as f:
            ours = f.read() == shipped
        runnable = os.access(path, os.X_OK)
    except OSError:
        ours = runnable = False
    if ours and runnable:
        return argv, None, None
    why = "is not spanvisor's" if os.path.exists(path) else "is missing"
    return (
        None,
        (
            f"--gate: Cline runs its PreToolUse hook from {path} only, which {why}"
            f"{'' if runnable or not ours else ' (not executable)'}: Cline would run every tool ungated, so it is not "
            "started. `spanvisor assets export DIR`, then copy DIR/cline/PreToolUse there (chmod +x), and "
            "TaskStart, TaskComplete, TaskError, TaskCancel and SessionShutdown beside it for its name and its ends "
            "without the launcher"
        ),
        None,
    )
