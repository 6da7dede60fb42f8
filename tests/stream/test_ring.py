"""The in-memory ring: each record's body is in its frame once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.stream.ring import Item, Ring, frame


def test_a_compressed_record_keeps_its_body_once_in_its_frame() -> None:
    ring = Ring("ep", size=3, age_s=60.0, hot=1, block=1)
    items = [
        Item(f"e{i}", "checkpoint", f"t{i}", "agent", "running", b'{"n": %d}' % i, f"d{i}" if i % 2 else None)
        for i in range(5)
    ]
    ring.append(list(enumerate(items, start=1)))
    got = ring.after(2)
    assert got is not None
    assert [r.pos for r in got] == [3, 4, 5]
    for r in got:
        whole = items[r.pos - 1]
        assert r.frame == frame("ep", r.pos, whole)  # what a client is sent: the body in full
        # Compressed (all but the one hot record): not a second copy.
        assert r.item.data == (whole.data if r.pos == 5 else b"")
        assert (r.item.event_id, r.item.kind, r.item.task_id, r.item.agent_id, r.item.status, r.item.former_id) == (
            whole.event_id,
            whole.kind,
            whole.task_id,
            whole.agent_id,
            whole.status,
            whole.former_id,  # a renamed task's former id, for ?task= (compressed blocks too)
        )
    assert ring.after(0) is None  # below the floor: replay or reset


def test_a_hot_record_keeps_the_item_it_was_given_and_its_frame() -> None:
    # The newest records keep the item as it came (the body twice, for at
    # most `hot` records): no copy without its body is made for every event.
    ring = Ring("ep", size=100, age_s=60.0, hot=8, block=4)
    items = [Item(f"e{i}", "checkpoint", f"t{i}", None, None, b'{"n": "\\u00e9 %d"}' % i) for i in range(6)]
    ring.append(list(enumerate(items, start=1)))
    got = ring.after(0)
    assert got is not None
    assert [r.item for r in got] == items
    assert [r.frame for r in got] == [frame("ep", p, it) for p, it in enumerate(items, start=1)]


_KINDS = ("checkpoint", "task_started", "task_finished")


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple[str, int]]:
    """Appends of a few positions (gaps and replays among them), reads and
    lags at any position, clock moves that age records out."""
    return draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("append"), st.integers(0, 12)),
                st.tuples(st.just("after"), st.integers(-2, 200)),
                st.tuples(st.just("behind"), st.integers(-2, 200)),
                st.tuples(st.just("tick"), st.integers(0, 3)),
            ),
            max_size=60,
        )
    )


@settings(max_examples=300, deadline=None)
@given(
    steps=_steps(),
    size=st.integers(1, 40),
    hot=st.integers(1, 6),
    block=st.integers(1, 5),
    limit=st.integers(1, 12),
    gaps=st.lists(st.integers(1, 3), min_size=1, max_size=5),
)
def test_a_compressed_ring_answers_as_a_plain_list_of_records(
    steps: list[tuple[str, int]], size: int, hot: int, block: int, limit: int, gaps: list[int]
) -> None:
    """Older records are kept compressed in blocks: every answer (records,
    their frames and fields, the floor, the head, the lag) is the one a plain
    list of the last ``size`` records not older than ``age_s`` gives."""
    clock = [1000.0]
    ring = Ring("ep", size=size, age_s=5.0, hot=hot, block=block, clock=lambda: clock[0])
    model: list[tuple[int, Item, float]] = []
    floor, pos, n = 0, 0, 0

    def trim() -> None:
        nonlocal floor
        while model and (len(model) > size or clock[0] - model[0][2] > 5.0):
            floor = model.pop(0)[0]

    for op, arg in steps:
        if op == "append":
            batch = []
            for _ in range(arg):
                n += 1
                pos += gaps[n % len(gaps)]
                agent = None if n % 4 == 0 else f"agent{n % 3}"
                item = Item(f"e{n}", _KINDS[n % 3], f"task é{n % 5}", agent, "running" if n % 2 else None, b"{}" * n)
                batch.append((pos, item))
            replay = [(p, i) for p, i in batch[: arg // 3]]  # already in the ring: skipped
            ring.append(batch + replay)
            model.extend((p, i, clock[0]) for p, i in batch)
            trim()
        elif op == "tick":
            clock[0] += arg
        elif op == "after":
            trim()
            got = ring.after(arg, limit)
            assert ring.floor == floor
            if arg < floor:
                assert got is None
                continue
            want = [(p, i) for p, i, _ in model if p > arg][:limit]
            assert got is not None
            assert [r.pos for r in got] == [p for p, _ in want]
            for r, (p, i) in zip(got, want, strict=True):
                assert r.frame == frame("ep", p, i)
                # The filters' fields; the body only while hot (the frame has it).
                assert r.item in (i, Item(i.event_id, i.kind, i.task_id, i.agent_id, i.status, b""))
        else:
            assert ring.behind(arg) == sum(1 for p, _, _ in model if p > arg)
        assert ring.head == (model[-1][0] if model else floor)
