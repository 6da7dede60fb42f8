"""Whose events an outbox holds: the destination they were meant for.

An agent whose ``SPANVISOR_DATABASE_URL`` cannot be reached keeps its events
in the outbox; a later ``spanvisor serve`` with the same data directory but
another database (the embedded one) used to replay them there, into an audit
trail they never belonged to. Each destination now has an outbox file of its
own, named by a digest of who it is, and only that destination's sink opens
it (:mod:`.outbox`): the others are kept and reported, never sent elsewhere.

A database's identity is its host, port, database name and user: the same
database reached with a new password is the same destination, and the
password is never part of the digest or the label.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# Where an outbox file records whom it holds for (one row).
DESTINATION_SCHEMA = "CREATE TABLE IF NOT EXISTS destination (digest TEXT NOT NULL, label TEXT NOT NULL)"


@dataclass(frozen=True)
class OutboxDestination:
    """A destination's stable digest and a label safe to print (no secrets)."""

    digest: str
    label: str

    @classmethod
    def of(cls, kind: str, *parts: str) -> OutboxDestination:
        """The destination named by ``kind`` and its identifying ``parts``."""
        label = f"{kind}:{'/'.join(parts)}"
        return cls(hashlib.sha256(label.encode("utf-8")).hexdigest()[:16], label)


def database_destination(url: str) -> OutboxDestination:
    """A PostgreSQL URL's destination: host, port, dbname and user (libpq's
    defaults when left out; query parameters such as ``?host=`` win, as in
    libpq), never the password."""
    split = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(split.query).items() if v}
    try:
        port_in_url = split.port
    except ValueError:  # a port that is not a number: kept as written
        port_in_url = None
    host = query.get("host") or unquote(split.hostname or "") or "localhost"
    port = query.get("port") or str(port_in_url or 5432)
    user = query.get("user") or unquote(split.username or "")
    dbname = query.get("dbname") or unquote(split.path.lstrip("/")) or user
    where = f"postgresql://{user + '@' if user else ''}{host}:{port}/{dbname}"
    return OutboxDestination.of("database", where)


@dataclass(frozen=True)
class HeldElsewhere:
    """Events an outbox file keeps for a destination not configured now."""

    path: Path
    label: str  # "" for a file written before outboxes recorded their destination
    events: int


def outbox_path(directory: Path, name: str, destination: OutboxDestination | None) -> Path:
    """``outbox-<name>.sqlite3``, or ``outbox-<name>@<digest>.sqlite3`` for a destination's own."""
    return directory / (
        f"outbox-{name}.sqlite3" if destination is None else f"outbox-{name}@{destination.digest}.sqlite3"
    )


def held_elsewhere(directory: Path, name: str, mine: Path) -> list[HeldElsewhere]:
    """The sink ``name``'s other outbox files in ``directory`` that hold events,
    read without changing them."""
    candidates = [directory / f"outbox-{name}.sqlite3", *sorted(directory.glob(f"outbox-{name}@*.sqlite3"))]
    return _holding([p for p in candidates if p != mine])


def held_in(directory: Path) -> list[tuple[str, HeldElsewhere]]:
    """Every sink's outbox files in ``directory`` that hold events, with the
    sink's name: what ``spanvisor deadletter list`` shows as waiting."""
    out = []
    for held in _holding(sorted(directory.glob("outbox-*.sqlite3"))):
        out.append((held.path.name.removeprefix("outbox-").removesuffix(".sqlite3").split("@", 1)[0], held))
    return out


def _holding(candidates: list[Path]) -> list[HeldElsewhere]:
    found: list[HeldElsewhere] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                events = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                named = conn.execute("SELECT name FROM sqlite_master WHERE name = 'destination'").fetchone()
                row = conn.execute("SELECT label FROM destination").fetchone() if named else None
            finally:
                conn.close()
        except sqlite3.Error:
            continue  # not an outbox we can read: left as it is
        if events:
            found.append(HeldElsewhere(path, str(row[0]) if row else "", events))
    return found


__all__ = [
    "DESTINATION_SCHEMA",
    "HeldElsewhere",
    "OutboxDestination",
    "database_destination",
    "held_elsewhere",
    "held_in",
    "outbox_path",
]
