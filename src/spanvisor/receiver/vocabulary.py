"""One copy of each string value that many open tasks keep: agent and
model names, task names, repos, steps and statuses.

protobuf makes a new ``str`` for every value it is asked for, so without
this every open task kept its own copy of its agent's name and its model's
(about 120 bytes a task on the memory benchmark's small tasks, more with
task names and repos). The decoder passes the values of
:data:`SHARED_KEYS` and the resource's ``service.name`` through
:meth:`Vocabulary.share`, which hands back the first equal string it kept.

The values come from agents, so the table is bounded: at most
:data:`MAX_ENTRIES` strings of at most :data:`MAX_LENGTH` characters (a
longer value is never kept). When it is full it is emptied and starts
again: a client sending a unique value per span makes it fill and empty
over and over, never grow, and the names that repeat are back in it within
a request or two. Sharing changes no value, only which equal object a
span holds: events are the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from spanvisor.canonical import MAX_ACTION_BYTES
from spanvisor.spans import conventions as cv

# Attribute strings longer than this are cut by the decoder; the tracker
# clamps again to its own limits, this only bounds the memory one request
# can pin. But for an approval request's action: its digest binds it whole,
# so it is kept up to the cap a request may carry (and one character more,
# so the tracker refuses what is over it for its size, not as cut JSON).
MAX_STRING = 64 * 1024
# A diff is kept whole up to its own bound (tracking/diffs.py clips it at a file's end).
MAX_DIFF_CHARS = 256 * 1024
LONG_STRINGS: Final[Mapping[str, int]] = MappingProxyType(
    {cv.APPROVAL_ACTION: MAX_ACTION_BYTES + 1, cv.DIFF_TEXT: MAX_DIFF_CHARS + 1}
)


def limit_of(key: str) -> int:
    """The longest string the decoder keeps of attribute ``key``."""
    return LONG_STRINGS.get(key, MAX_STRING)


# Span attributes whose string values repeat across tasks and that a task
# keeps while open (never an id or a message). Keys only read in passing
# (operation, span kind, provider, tool) are left out: each shared value is
# a dict lookup on the decoder's path.
SHARED_KEYS: Final = frozenset(
    {
        cv.AGENT_ID,
        cv.AGENT_NAME,
        cv.TASK_NAME,
        cv.REPO,
        cv.BRANCH,
        cv.PULL_REQUEST,
        cv.STATUS,
        cv.STEP,
        cv.GEN_AI_AGENT_ID,
        cv.GEN_AI_AGENT_NAME,
        cv.GEN_AI_REQUEST_MODEL,
        cv.GEN_AI_RESPONSE_MODEL,
        cv.OI_MODEL,
        cv.TL_ENTITY,
        cv.TL_LS_MODEL,
    }
)
# At most this many strings kept: about 1 MB at the longest in ASCII
# (MAX_LENGTH characters, the str and its dict entry), 3.6 MB if every one
# takes 4 bytes a character; far less for real names.
MAX_ENTRIES: Final = 4096
# A value longer than this is no name: returned as it is, never kept.
MAX_LENGTH: Final = 200


class Vocabulary:
    """A bounded table of shared strings (see the module's docstring)."""

    __slots__ = ("emptied", "table")

    def __init__(self) -> None:
        # Read directly by the decoder for its hits: one dict lookup.
        self.table: dict[str, str] = {}
        self.emptied = 0  # how often it filled and started again

    def share(self, s: str) -> str:
        """The kept string equal to ``s``, else ``s`` (kept if short enough)."""
        kept = self.table.get(s)
        if kept is not None:
            return kept
        if len(s) > MAX_LENGTH:
            return s
        if len(self.table) >= MAX_ENTRIES:
            self.table.clear()
            self.emptied += 1
        self.table[s] = s
        return s


# The receiver's one table (decoding runs on the receiver's threads: a
# dict's get and set are each atomic, and a race only costs a second copy).
VOCABULARY: Final = Vocabulary()

__all__ = ["MAX_ENTRIES", "MAX_LENGTH", "SHARED_KEYS", "VOCABULARY", "Vocabulary"]
