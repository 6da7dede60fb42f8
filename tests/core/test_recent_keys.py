"""The tracker's compact windows (tracking/recent.py): exact keys, the bound kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spanvisor.tracking.recent import RecentKeys, pair_key

ids = st.text(alphabet="0123456789abcdefXYZ", max_size=20)


@given(st.tuples(ids, ids), st.tuples(ids, ids))
def test_pair_key_is_exact(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert (pair_key(*a) == pair_key(*b)) == (a == b)
    assert hash(pair_key(*a)) == hash(pair_key(*a))


def test_otlp_ids_join_into_one_string() -> None:
    trace, span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    assert pair_key(trace, span) == trace + span
    assert pair_key("t1", "s1") == ("t1", "s1")  # any other width stays a pair


@given(st.lists(st.integers(0, 30), max_size=200), st.integers(1, 10))
def test_remembers_the_last_size_distinct_keys(keys: list[int], size: int) -> None:
    window = RecentKeys(size)
    model: list[str] = []  # distinct keys in first-remembered order, as an OrderedDict keeps them
    for k in keys:
        key = f"k{k}"
        new = key not in model
        assert window.remember(key) is new
        if new:
            model.append(key)
            del model[:-size]
        assert set(window) == set(model)
        assert len(window) == len(model) <= size
