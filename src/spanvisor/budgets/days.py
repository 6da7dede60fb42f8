"""Naming a time's UTC day and month cheaply (the budget ledger's windows)."""

from __future__ import annotations

from datetime import UTC, datetime


class DayNames:
    """The UTC day and month (``2026-11-22``, ``2026-11``) of a time in ns,
    exactly as ``datetime.fromtimestamp(t / 1e9, UTC)`` names them, computed
    once per day: a time well inside the last day seen reuses its names."""

    __slots__ = ("_hi", "_lo", "_names")

    def __init__(self) -> None:
        self._lo, self._hi = 1.0, 0.0
        self._names = ("", "")

    def of(self, end_ns: int) -> tuple[str, str]:
        ts = max(0, end_ns) / 1e9
        if self._lo <= ts <= self._hi:
            return self._names
        when = datetime.fromtimestamp(ts, UTC)
        self._names = (when.strftime("%Y-%m-%d"), when.strftime("%Y-%m"))
        start = datetime(when.year, when.month, when.day, tzinfo=UTC).timestamp()
        # fromtimestamp rounds to the microsecond: a margin of two keeps a time
        # that rounds across midnight out of the cached range.
        self._lo, self._hi = start + 2e-6, start + 86_400 - 2e-6
        return self._names


__all__ = ["DayNames"]
