"""The tracker's bounded windows of recently seen spans and finished tasks.

The duplicate window (the last ``SPANVISOR_DEDUP_WINDOW`` spans that carry
content) and the record of finished tasks (as many tasks) are the largest
things a long-running ``serve`` holds once they are full: one entry per span
or task, hundreds of thousands of them. An entry was one Python string in a
set beside a deque (about 150 bytes with its share of the tables), allocated
as the window filled: the record of finished tasks fills only after millions
of spans (200,000 tasks), so a server's memory rose for hours.

Here an entry takes a fixed width in memory set aside once, nothing per
entry: its key as 24 bytes (trace id and span id in binary) in a ring, its
hash (8 bytes) beside it, and a 4-byte slot in an open-addressing table
(linear probing, at most half full). 200,000 entries take 8.4 MB, mapped
privately and anonymously so that pages the window has not reached yet cost
nothing: the ring and the hashes fill in order, and the table, which a key's
hash reaches anywhere, starts at 16,384 slots and doubles as keys come (up
to twice the entries), so a window of 20,000 keys keeps a table of 256 KB,
not the 2 MB of a full one. The
key is exact: a lookup compares the whole 24 bytes, never a hash alone, so
there are no false positives (no span dropped as a duplicate that is not
one) and no false negatives within the window (a finished task is forgotten
only when 200,000 newer ones have finished, as before: never sooner, so a
late span of it never opens a ghost task). Keys of any other shape (a test's
short ids) are kept exactly in a set beside the ring, in the same order.

:func:`pair_key` joins the ids only when the span id has OTLP's width (16
hex digits): two such pairs join to the same string only if both ids are
equal. Any other pair stays a tuple, which never equals a string.
"""

from __future__ import annotations

import mmap
from collections.abc import Hashable, Iterator

SPAN_ID_CHARS = 16  # an OTLP span id in hex
KEY_BYTES = 24  # a trace id (16 bytes) and a span id (8) in binary

RecentKey = str | tuple[str, str]


def pair_key(trace_id: str, span_id: str) -> RecentKey:
    """One compact, exact key for a (trace id, span id) pair."""
    return trace_id + span_id if len(span_id) == SPAN_ID_CHARS else (trace_id, span_id)


def _binary(key: Hashable, width: int = KEY_BYTES) -> bytes | None:
    """The key as ``width`` bytes when it is ``2 * width`` lower-case hex
    digits (what OTLP ids joined by :func:`pair_key` are, or an event id),
    else None. Exact: only a key that the bytes spell back is taken, so two
    keys never share bytes."""
    if type(key) is not str or len(key) != 2 * width:
        return None
    try:
        b = bytes.fromhex(key)
    except ValueError:
        return None
    return b if len(b) == width and b.hex() == key else None


# Private, not mmap's default (shared): a read of a shared anonymous page
# allocates it, so lookups in an empty table filled RSS (2 MB for the
# finished-task record before any task finished); a private one reads as
# the zero page until written.
_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
# The table's first size (64 KB: 8,192 keys before it first doubles, so a
# tracker that never sees more pays no rehash); it doubles up to twice the
# entries, each doubling putting every key back once.
FIRST_SLOTS = 1 << 14


def _zeroed(nbytes: int) -> mmap.mmap:
    """Zeroed memory, taken by the OS only where written (anonymous map)."""
    if _PRIVATE:
        return mmap.mmap(-1, max(nbytes, 1), flags=_PRIVATE)
    return mmap.mmap(-1, max(nbytes, 1))


class RecentKeys:
    """The last ``size`` distinct keys remembered; the oldest is forgotten first.

    Add keys only with :meth:`remember` (O(1), the bound kept); ask with
    ``in``. A key remembered again while still known keeps its place.
    ``width``: the bytes of a key kept in the ring (24: a trace id and a
    span id; 16: an event id, 32 hex digits).
    """

    __slots__ = (
        "_count",
        "_hashes",
        "_hex",
        "_ids",
        "_maps",
        "_mask",
        "_max_slots",
        "_next",
        "_other_keys",
        "_others",
        "_size",
        "_table",
        "_width",
    )

    def __init__(self, size: int, width: int = KEY_BYTES) -> None:
        n = self._size = max(1, size)
        self._width = width
        self._hex = 2 * width
        # At full size the table has at least twice the entries; it starts
        # small and doubles while the ring fills (see _grow).
        self._max_slots = 1 << max(3, (2 * n - 1).bit_length())
        slots = min(FIRST_SLOTS, self._max_slots)
        self._mask = slots - 1
        self._maps = (_zeroed(slots * 4), _zeroed(n * 8), _zeroed(n * width))
        # A table slot holds a ring position + 1 (0: empty).
        self._table = memoryview(self._maps[0]).cast("i")
        self._hashes = memoryview(self._maps[1]).cast("q")
        self._ids = self._maps[2]
        self._next = 0  # the ring position the next key takes
        self._count = 0  # keys held
        # Keys of another shape, by ring position, and the other way round.
        self._others: dict[int, Hashable] = {}
        self._other_keys: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        # Inlined (_binary, _slot): a lookup per span on the tracker's thread.
        w = self._width
        if type(key) is str and len(key) == self._hex:
            try:
                b = bytes.fromhex(key)
            except ValueError:
                b = b""
            if len(b) == w and b.hex() == key:
                h = hash(b)
                table, hashes, ids, mask = self._table, self._hashes, self._ids, self._mask
                i = h & mask
                while e := table[i]:
                    p = e - 1
                    if hashes[p] == h and ids[p * w : p * w + w] == b:
                        return True
                    i = (i + 1) & mask
                return False
        return key in self._other_keys

    def __iter__(self) -> Iterator[Hashable]:
        start = (self._next - self._count) % self._size
        for k in range(self._count):
            p = (start + k) % self._size
            other = self._others.get(p, self)
            if other is not self:
                yield other
            else:
                yield self._ids[p * self._width : (p + 1) * self._width].hex()

    def remember(self, key: Hashable) -> bool:
        """Remember ``key``; False when it was known already."""
        w = self._width
        b = _binary(key, w)
        if b is None:
            if key in self._other_keys:
                return False
            p = self._take()
            self._others[p] = key
            self._other_keys[key] = p
            return True
        h = hash(b)
        table, hashes, ids, mask = self._table, self._hashes, self._ids, self._mask
        i = h & mask
        while e := table[i]:
            p = e - 1
            if hashes[p] == h and ids[p * w : p * w + w] == b:
                return False
            i = (i + 1) & mask
        if mask + 1 < self._max_slots and 2 * (self._count + 1) > mask + 1:
            # More than half full with this key: a table twice the size
            # first (amortised O(1); it never shrinks), then probe it.
            self._grow()
            table, mask = self._table, self._mask
            i = h & mask
            while table[i]:
                i = (i + 1) & mask
        if self._count == self._size:
            # Forgetting the oldest key may open a slot before this one on
            # the key's probe run (where a lookup would stop): probe again.
            p = self._take()
            i = h & mask
            while table[i]:
                i = (i + 1) & mask
        else:
            p = self._take()
        ids[p * w : p * w + w] = b
        hashes[p] = h
        table[i] = p + 1
        return True

    def _grow(self) -> None:
        """The table at twice its size, every key of the ring put back from
        its stored hash (no key is hashed again)."""
        slots = 2 * (self._mask + 1)
        new_map = _zeroed(slots * 4)
        table = memoryview(new_map).cast("i")
        mask = slots - 1
        hashes, others, size = self._hashes, self._others, self._size
        start = self._next - self._count
        for k in range(self._count):
            p = (start + k) % size
            if p in others:
                continue
            i = hashes[p] & mask
            while table[i]:
                i = (i + 1) & mask
            table[i] = p + 1
        old_view, old_map = self._table, self._maps[0]
        self._table, self._mask = table, mask
        self._maps = (new_map, self._maps[1], self._maps[2])
        old_view.release()  # the map cannot close while a view holds it
        old_map.close()  # its pages go back to the OS now

    def _take(self) -> int:
        """The next ring position, its old key forgotten when the ring is full."""
        p = self._next
        self._next = (p + 1) % self._size
        if self._count == self._size:
            self._forget(p)
        else:
            self._count += 1
        return p

    def _forget(self, p: int) -> None:
        other = self._others.pop(p, self)
        if other is not self:
            del self._other_keys[other]
            return
        table, hashes, mask = self._table, self._hashes, self._mask
        i = hashes[p] & mask
        while table[i] != p + 1:
            i = (i + 1) & mask
        # Backward-shift deletion: later entries of the probe run move into
        # the hole unless their home slot lies after it, so that every
        # lookup still finds its key without tombstones.
        j = i
        while True:
            j = (j + 1) & mask
            e = table[j]
            if not e:
                break
            home = hashes[e - 1] & mask
            stays = (i < home <= j) if i <= j else (home > i or home <= j)
            if not stays:
                table[i] = e
                i = j
        table[i] = 0


__all__ = ["SPAN_ID_CHARS", "RecentKey", "RecentKeys", "pair_key"]
