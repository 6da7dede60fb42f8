"""Label caps: how many distinct values an agent-supplied label may take.

Every label value multiplies a metric's series. Agents choose their ids and
repos, so each such label is capped; values past the cap are reported as
``other`` and counted in ``spanvisor_label_overflow_total``.
"""

from __future__ import annotations

__all__ = ["MAX_LABEL_CHARS", "OTHER", "LabelCap", "PairCap"]

OTHER = "other"
# Label values come from agents; a megabyte agent id must not become a
# megabyte label. 128 characters is far more than any sane id.
MAX_LABEL_CHARS = 128


class LabelCap:
    """Admits the first ``cap`` distinct values; later ones become ``other``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.admitted: set[str] = set()
        self.overflowed = 0

    def label(self, value: str | None) -> str:
        if not value:
            return ""
        if len(value) > MAX_LABEL_CHARS:
            value = value[:MAX_LABEL_CHARS]
        if value in self.admitted:
            return value
        if len(self.admitted) < self.cap:
            self.admitted.add(value)
            return value
        self.overflowed += 1
        return OTHER


class PairCap:
    """Keeps the repo label for the first ``cap`` distinct (agent, repo) pairs.

    Capping agents and repos separately lets their product through (50 x 50
    series on one counter). Capped as pairs, a counter labelled (agent, repo)
    has at most ``cap`` series with a real repo plus one ``repo="other"`` per
    agent. A pair seen once keeps its repo for the process's life, so a
    series never changes label.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.admitted: set[tuple[str, str]] = set()
        self.overflowed = 0

    def label(self, agent: str, repo: str | None) -> str:
        value = (repo or "")[:MAX_LABEL_CHARS]
        pair = (agent, value)
        if pair in self.admitted:
            return value
        if len(self.admitted) < self.cap:
            self.admitted.add(pair)
            return value
        self.overflowed += 1
        return OTHER
