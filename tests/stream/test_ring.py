"""The in-memory ring: each record's body is in its frame once."""

from __future__ import annotations

from spanvisor.stream.ring import Item, Ring, frame


def test_a_record_keeps_its_body_once_in_its_frame() -> None:
    ring = Ring("ep", size=3, age_s=60.0)
    items = [Item(f"e{i}", "checkpoint", f"t{i}", "agent", "running", b'{"n": %d}' % i) for i in range(5)]
    ring.append(list(enumerate(items, start=1)))
    got = ring.after(2)
    assert got is not None
    assert [r.pos for r in got] == [3, 4, 5]
    for r in got:
        whole = items[r.pos - 1]
        assert r.frame == frame("ep", r.pos, whole)  # what a client is sent: the body in full
        assert r.item.data == b""  # not a second copy
        assert (r.item.event_id, r.item.kind, r.item.task_id, r.item.agent_id, r.item.status) == (
            whole.event_id,
            whole.kind,
            whole.task_id,
            whole.agent_id,
            whole.status,
        )
    assert ring.after(0) is None  # below the floor: replay or reset
