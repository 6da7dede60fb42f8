"""What a session's hooks remember between their processes: how its last
turn ended, a cancel the hook has seen, and (under the system gate) the
secret its task's end is proved by (:mod:`spanvisor.hook.sessionkey`).

Each hook event is a process of its own, so a session's ``Stop`` (its turn
finished), ``StopFailure`` (an API error ended it), ``Interrupt`` and the
``SessionEnd`` that follows them meet here: one small file per session's
task, written whole (a temporary file renamed over it), in a folder only
the user can open (mode 0700), beside the gate's note spool
(``$SPANVISOR_DATA_DIR/hook-sessions``, else
``~/.local/state/spanvisor/hook-sessions``). ``SessionEnd`` reads the
file, ends the task, and removes it; what a session that never ended left
behind goes after :data:`KEEP_S`.

Standard library only: a turn's end is answered on the gate's path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

ENV_STATE = "SPANVISOR_HOOK_SESSIONS"
KEEP_S = 7 * 86_400
TurnState = Literal["open", "complete", "error", "cancelled"]
_TURN, _CANCEL, _KEY = ".turn", ".cancel", ".key"


class Turn(NamedTuple):
    """The session's latest turn as its hooks heard it."""

    state: TurnState
    key: str | None  # Claude Code's prompt_id, Codex's turn_id (Gemini CLI: none)
    error: str | None
    at: int  # when it was heard (ns)


class Cancel(NamedTuple):
    """A cancel of the session's task, as the control API said it."""

    by: str
    comment: str | None
    time_ns: int
    run_id: str | None

    def text(self) -> str:
        """``Cancelled by alice: wrong branch``."""
        return f"Cancelled by {self.by}" + (f": {self.comment}" if self.comment else "")

    def reason(self) -> str:
        """What the hook answers a call of the cancelled session:
        ``spanvisor: cancelled by alice: wrong branch``."""
        return "spanvisor: c" + self.text()[1:]


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    e = os.environ if env is None else env
    if e.get(ENV_STATE):
        return Path(e[ENV_STATE])
    if e.get("SPANVISOR_DATA_DIR"):
        return Path(e["SPANVISOR_DATA_DIR"]) / "hook-sessions"
    state = e.get("XDG_STATE_HOME") or os.path.join(e.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return Path(state) / "spanvisor" / "hook-sessions"


def _path(task_id: str, suffix: str, env: Mapping[str, str] | None) -> Path:
    name = hashlib.blake2b(task_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return state_dir(env) / f"{name}{suffix}"


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Unique per writer: the system gate writes from many threads of one process.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def note(task_id: str, turn: Turn, env: Mapping[str, str] | None = None) -> None:
    """Remember ``turn`` as the session's latest."""
    _write(_path(task_id, _TURN, env), turn._asdict())


def latest(task_id: str, env: Mapping[str, str] | None = None) -> Turn | None:
    doc = _read(_path(task_id, _TURN, env))
    if doc is None or doc.get("state") not in ("open", "complete", "error", "cancelled"):
        return None
    key, error, at = doc.get("key"), doc.get("error"), doc.get("at")
    return Turn(
        doc["state"],
        key if isinstance(key, str) else None,
        error if isinstance(error, str) else None,
        at if isinstance(at, int) else 0,
    )


def cancelled(task_id: str, cancel: Cancel, env: Mapping[str, str] | None = None) -> None:
    """Remember that the task was cancelled (the hook then blocks even when
    the control API cannot be asked)."""
    _write(_path(task_id, _CANCEL, env), cancel._asdict())


def cancel_of(task_id: str, env: Mapping[str, str] | None = None) -> Cancel | None:
    doc = _read(_path(task_id, _CANCEL, env))
    if doc is None or not isinstance(doc.get("by"), str):
        return None
    comment, at, run = doc.get("comment"), doc.get("time_ns"), doc.get("run_id")
    return Cancel(
        doc["by"],
        comment if isinstance(comment, str) else None,
        at if isinstance(at, int) else 0,
        run if isinstance(run, str) else None,
    )


def forget_cancel(task_id: str, env: Mapping[str, str] | None = None) -> None:
    with contextlib.suppress(OSError):
        _path(task_id, _CANCEL, env).unlink()


class Secret(NamedTuple):
    """A session's secret, and when its start record naming the secret's
    SHA-256 reached the receiver (0: not yet; ``tried``: the last attempt)."""

    secret: str
    sent: int = 0
    tried: float = 0.0
    cli: str = ""  # the CLI it was made under (<pid>:<start time>): its end is proved once that CLI is gone


def secret_of(task_id: str, env: Mapping[str, str] | None = None) -> Secret | None:
    doc = _read(_path(task_id, _KEY, env))
    if doc is None or not isinstance(doc.get("secret"), str) or not doc["secret"]:
        return None
    sent, tried, cli = doc.get("sent"), doc.get("tried"), doc.get("cli")
    return Secret(
        doc["secret"],
        sent if isinstance(sent, int) else 0,
        float(tried) if isinstance(tried, int | float) else 0.0,
        cli if isinstance(cli, str) else "",
    )


def made_secret(task_id: str, secret: str, env: Mapping[str, str] | None = None, cli: str = "") -> Secret:
    """The session's secret: ``secret`` (made under ``cli``) when it had
    none, else the one an earlier call made (the first stands: linked into
    place, never replaced)."""
    path = _path(task_id, _KEY, env)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(Secret(secret, cli=cli)._asdict(), f)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return secret_of(task_id, env) or Secret(secret, cli=cli)


def secret_said(task_id: str, secret: Secret, env: Mapping[str, str] | None = None) -> None:
    """Remember how the start record naming ``secret`` fared."""
    _write(_path(task_id, _KEY, env), secret._asdict())


def forget(task_id: str, env: Mapping[str, str] | None = None) -> None:
    """The session ended: nothing of it is kept."""
    for suffix in (_TURN, _CANCEL, _KEY):
        with contextlib.suppress(OSError):
            _path(task_id, suffix, env).unlink()


def sweep(env: Mapping[str, str] | None = None, now: float | None = None) -> int:
    """Remove what sessions that never ended left behind (older than
    :data:`KEEP_S`); how many files went."""
    gone = 0
    cutoff = (time.time() if now is None else now) - KEEP_S
    for path in _entries(state_dir(env)):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                gone += 1
    return gone


def _entries(where: Path) -> Iterator[Path]:
    try:
        yield from (p for p in where.iterdir() if p.is_file())
    except OSError:
        return


__all__ = [
    "ENV_STATE",
    "KEEP_S",
    "Cancel",
    "Secret",
    "Turn",
    "TurnState",
    "cancel_of",
    "cancelled",
    "forget",
    "forget_cancel",
    "latest",
    "made_secret",
    "note",
    "secret_of",
    "secret_said",
    "state_dir",
    "sweep",
]
