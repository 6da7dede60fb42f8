"""PostgresStateStore.update_many: many keys in one transaction, each change
seeing the key as changed earlier in the batch, written as a won
put_if_newer; nothing of a batch whose change raises; two batches on the
same key never lose an update; the control log batches with it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from spanvisor.control.log import ControlLog
from spanvisor.statestores.api import BatchStateStore
from spanvisor_postgres.statestore import PostgresStateStore

from .conftest import fetch, make_config, run


def _bump(raw: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], int]:
    n = 0 if raw is None else int(raw["n"])
    return {"n": n + 1}, n + 1


def _never(raw: Mapping[str, Any] | None) -> None:
    return None


def _fails(raw: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], int]:
    raise ValueError("a change that cannot compute")


def test_update_many_in_order_and_all_or_nothing(db_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        store = await PostgresStateStore.open(make_config(tmp_path, db_url))
        try:
            assert isinstance(store, BatchStateStore) and ControlLog(store).batches
            assert (await store.put_if_newer("ns", "b", {"n": 3}, 3, "other")).won
            await store.update_many(
                [("ns", "a", _bump), ("ns", "b", _bump), ("ns", "a", _bump), ("ns", "c", _never)], "me"
            )
            assert await store.get("ns", "a") == {"n": 2}
            assert await store.get("ns", "b") == {"n": 4}
            rows = await fetch(db_url, "SELECT key, owner, version, lease_expires FROM delivery_state ORDER BY key")
            assert [tuple(r) for r in rows] == [("a", "me", 2, None), ("b", "me", 4, None)]  # no row held for c
            # Written as a won put_if_newer: an older version then loses.
            assert not (await store.put_if_newer("ns", "b", {"n": 0}, 3, "other")).won
            with pytest.raises(ValueError):
                await store.update_many([("ns", "a", _bump), ("ns", "d", _bump), ("ns", "b", _fails)], "me")
            assert await store.get("ns", "a") == {"n": 2} and await store.get("ns", "d") is None
            # Two batches on the same keys at once: both updates count.
            await asyncio.gather(
                *(store.update_many([("ns", k, _bump) for k in ("a", "e")], owner) for owner in ("x", "y"))
            )
            assert await store.get("ns", "a") == {"n": 4} and await store.get("ns", "e") == {"n": 2}
        finally:
            await store.close()

    run(main)
