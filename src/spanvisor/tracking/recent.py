"""The tracker's bounded windows of recently seen spans and finished tasks.

The duplicate window (the last ``SPANVISOR_DEDUP_WINDOW`` spans that carry
content) and the record of finished tasks (as many tasks) are the largest
things a long-running ``serve`` holds once they are full: one entry per span
or task, hundreds of thousands of them. An entry was a ``(trace id, span
id)`` tuple in an ``OrderedDict``: the tuple, both id strings it pinned
after the span itself was gone, and the ordered dict's links, 219 bytes an
entry on the project mix (278 for a finished task, whose trace id no other
entry shares), more at 200,000 entries. Here an entry is one string, the
two ids joined (97 bytes), in a set, with a deque for the order. In-process,
3 million spans of the project mix (the duplicate window full, the record
of finished tasks at 70,000): 108 MB resident, not 146.

:func:`pair_key` joins the ids only when the span id has OTLP's width (16
hex digits): two such pairs join to the same string only if both ids are
equal. Any other pair (a test's short ids) stays a tuple, which never
equals a string: the key is exact either way, so nothing is dropped as a
duplicate that is not one.
"""

from __future__ import annotations

from collections import deque

SPAN_ID_CHARS = 16  # an OTLP span id in hex

RecentKey = str | tuple[str, str]


def pair_key(trace_id: str, span_id: str) -> RecentKey:
    """One compact, exact key for a (trace id, span id) pair."""
    return trace_id + span_id if len(span_id) == SPAN_ID_CHARS else (trace_id, span_id)


class RecentKeys(set[RecentKey]):
    """The last ``size`` distinct keys remembered; the oldest is forgotten first.

    A set (so a lookup is the set's own, in C) with the order in a deque
    beside it. Add keys only with :meth:`remember`, which keeps the bound;
    O(1). A key remembered again while still known keeps its place (as an
    ``OrderedDict`` assignment would). Full (200,000 keys, the default), the
    set and deque take about 50 bytes a key besides the key itself; a dict
    took 85 to 105 (its table grows to three times what it holds once keys
    are deleted), an ``OrderedDict`` 151. Below 50,000 keys a set's table
    grows fourfold and is the larger one, which matters less: a server
    runs with its windows full.
    """

    __slots__ = ("_order", "_size")

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = max(1, size)
        self._order: deque[RecentKey] = deque()

    def remember(self, key: RecentKey) -> bool:
        """Remember ``key``; False when it was known already."""
        if key in self:
            return False
        self.add(key)
        order = self._order
        order.append(key)
        if len(order) > self._size:
            self.discard(order.popleft())
        return True


__all__ = ["SPAN_ID_CHARS", "RecentKey", "RecentKeys", "pair_key"]
