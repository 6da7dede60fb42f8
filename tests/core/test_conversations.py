"""A task's conversations held as one object until a second comes
(``occupancy.Conversations``) answer as every conversation in one dict did."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.tracking.occupancy import ACTIVE_S, HISTORY, MAX_CONVERSATIONS, Conversations, Occupancy


class Model:
    """Every conversation in one dict, as before: key -> (latest, points)."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[Occupancy | None, list[tuple[int, int]]]] = {}
        self.last_end_ns = -1

    def record(self, key: str, occ: Occupancy) -> bool:
        self.last_end_ns = max(self.last_end_ns, occ.end_ns)
        latest, points = self.by_key.setdefault(key, (None, []))
        points.append((occ.start_ns, occ.tokens))
        points.sort()
        del points[:-HISTORY]
        if latest is not None and latest.order > occ.order:
            return False
        self.by_key[key] = (occ, points)
        if len(self.by_key) > MAX_CONVERSATIONS:
            del self.by_key[min(self.by_key, key=lambda k: self.by_key[k][0].end_ns)]  # type: ignore[union-attr]
        return True

    def fullest(self) -> tuple[str, Occupancy] | None:
        horizon = self.last_end_ns - int(ACTIVE_S * 1e9)
        best: tuple[str, Occupancy] | None = None
        best_rank: tuple[float, int, int, str, str] = (-1.0, -1, -1, "", "")
        for key, (occ, _) in self.by_key.items():
            if occ is None or occ.end_ns < horizon:
                continue
            ratio = occ.ratio
            rank = (ratio if ratio is not None else -1.0, occ.tokens, occ.end_ns, occ.span_id, key)
            if best is None or rank > best_rank:
                best, best_rank = (key, occ), rank
        return best


calls = st.lists(
    st.tuples(
        st.integers(0, MAX_CONVERSATIONS + 3),  # which conversation
        st.integers(0, 5000),  # tokens
        st.sampled_from([None, 1000, 8000]),  # window
        st.integers(0, 2000),  # start, in seconds
        st.integers(0, 30),  # duration
    ),
    max_size=80,
)


@given(calls)
def test_conversations_answer_as_one_dict_of_them(seq: list[tuple[int, int, int | None, int, int]]) -> None:
    convs, model = Conversations(), Model()
    for n, (conv, tokens, limit, start_s, took_s) in enumerate(seq):
        key = f"p:{conv}"
        start = start_s * 10**9
        occ = Occupancy(tokens, limit, "m", start + took_s * 10**9, f"{n:016x}", start)
        assert convs.record(key, occ) == model.record(key, occ)
        assert convs.fullest() == model.fullest()
        for k in model.by_key:
            assert convs.points(k) == model.by_key[k][1]
        assert [c.key for c in convs.all()] == list(model.by_key)
