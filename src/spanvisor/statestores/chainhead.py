"""The decision log's chain head, shared through the state store.

The audit plugin (``spanvisor_postgres``) reads the head of the decision
log's hash chain now and then (its number and hash, docs/design/audit.md) and
publishes it here; the webhook plugin, when asked, sends it to a receiver
outside the database. Two plugins share the record and neither may import
the other, so its place and shape are defined once, here.

The head only moves forward: it is written with ``put_if_newer`` at the
link's number as its version, so an older head (a replica that read the
chain a moment earlier) never replaces a newer one, whatever order the
writers come in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spanvisor.statestores.api import ConditionalStateStore, StateStore, put_own

NAMESPACE = "audit.chain"
# The newest head any process published.
HEAD_KEY = "head"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int  # the link's number (chain_seq)
    hash: str  # its row_hash: 64 lowercase hex digits
    at_ns: int  # when it was read as the head

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at_ns": self.at_ns}


def head_from(value: Mapping[str, Any] | None) -> ChainHead | None:
    """A stored head; None for anything absent or malformed (never raises)."""
    if not isinstance(value, Mapping):
        return None
    seq, digest, at_ns = value.get("seq"), value.get("hash"), value.get("at_ns")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
        return None
    if not isinstance(at_ns, int) or isinstance(at_ns, bool):
        return None
    return ChainHead(seq, digest, at_ns)


async def read_head(store: StateStore) -> ChainHead | None:
    return head_from(await store.get(NAMESPACE, HEAD_KEY))


async def advance(store: StateStore, head: ChainHead, owner: str) -> bool:
    """Publish ``head`` unless the store holds a newer one; True when written."""
    if isinstance(store, ConditionalStateStore):
        # own: the writer of a head may publish it again (the same link).
        claim = await put_own(store.put_if_newer, NAMESPACE, HEAD_KEY, head.to_dict(), head.seq, owner)
        return claim.won
    # A store without versions (a third party's): read, compare, write. Not
    # atomic, so two writers racing may store the older of two heads until
    # the next advance; every head stored is still a true link.
    current = await read_head(store)
    if current is not None and current.seq >= head.seq:
        return False
    await store.put(NAMESPACE, HEAD_KEY, head.to_dict(), owner)
    return True


__all__ = ["HEAD_KEY", "NAMESPACE", "ChainHead", "advance", "head_from", "read_head"]
