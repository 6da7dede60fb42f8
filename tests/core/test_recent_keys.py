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


HEX = "0123456789abcdef"
# OTLP-shaped keys (kept in the fixed-width table) and others (kept apart),
# few enough that keys come back and the small tables probe and shift.
otlp_keys = st.integers(0, 40).map(lambda i: f"{i:032x}" + HEX[i % 16] * 16)
other_keys = st.one_of(
    st.integers(0, 10).map(lambda i: f"k{i}"),
    st.integers(0, 10).map(lambda i: ("t", f"s{i}")),
    st.integers(0, 5).map(lambda i: f"{i:032x}".upper() + "A" * 16),  # not lower-case: kept apart, exactly
)


# Event ids (32 hex digits: a 16-byte window, the Prometheus sink's); the
# 48-digit OTLP keys are then of another width and kept apart, exactly.
event_ids = st.integers(0, 40).map(lambda i: f"{i * 7919:032x}")


@given(
    st.lists(st.one_of(otlp_keys, other_keys, event_ids), max_size=300), st.integers(1, 12), st.sampled_from([24, 16])
)
def test_fixed_width_window_matches_a_model(keys: list[object], size: int, width: int) -> None:
    window = RecentKeys(size, width=width)
    model: list[object] = []
    for key in keys:
        new = key not in model
        assert (key in window) is not new
        assert window.remember(key) is new  # type: ignore[arg-type]
        if new:
            model.append(key)
            del model[:-size]
        assert len(window) == len(model)
        assert list(window) == model  # oldest first
        for k in model:
            assert k in window


def test_upper_and_lower_case_ids_are_different_keys() -> None:
    window = RecentKeys(10)
    lower = "0af7651916cd43dd8448eb211c80319cb7ad6b7169203331"
    assert window.remember(lower)
    assert lower.upper() not in window
    assert window.remember(lower.upper())


def test_a_long_stream_through_a_small_window() -> None:
    """Thousands of OTLP keys through a window of 100, some coming back:
    every answer as a model's (probe runs wrapping around, shifted on
    every forget)."""
    import random

    rng = random.Random(7)
    window, model = RecentKeys(100), list[str]()
    for _ in range(20_000):
        key = f"{rng.randrange(400):032x}{rng.randrange(2):016x}"
        new = key not in model
        assert (key in window) is not new
        assert window.remember(key) is new
        if new:
            model.append(key)
            del model[:-100]
    assert list(window) == model


def test_the_table_grows_with_the_keys_not_the_bound() -> None:
    """A window of 200,000 holding 20,000 keys keeps a table for those (its
    pages are RSS as soon as a key lands anywhere in them), and every key
    is still found after each doubling."""
    window = RecentKeys(200_000)
    keys = [f"{i * 7919:032x}{i:016x}" for i in range(20_000)]
    for key in keys:
        assert window.remember(key)
    table_bytes = len(window._maps[0])
    assert 4 * 2 * 20_000 <= table_bytes <= 4 * 65_536  # twice the keys at least, not 2**19 slots
    assert all(k in window for k in keys)
    assert not window.remember(keys[0])
    assert f"{1:032x}{0:016x}" not in window


def test_a_window_that_grows_then_forgets_answers_as_a_model() -> None:
    """Keys of both shapes through a window of 12,000: the table doubles
    past its first size while the ring fills, then keys are forgotten
    oldest first; every answer as a model's."""
    import random
    from collections import OrderedDict

    rng = random.Random(11)
    window, model = RecentKeys(12_000), OrderedDict[object, None]()
    for step in range(40_000):
        key: object = f"{rng.randrange(30_000):032x}{rng.randrange(2):016x}"
        if step % 97 == 0:
            key = ("t", f"s{rng.randrange(50)}")  # another shape, kept apart
        new = key not in model
        assert (key in window) is not new
        assert window.remember(key) is new  # type: ignore[arg-type]
        if new:
            model[key] = None
            if len(model) > 12_000:
                model.popitem(last=False)
    assert list(window) == list(model)
    assert len(window._maps[0]) == 4 * 32_768  # grown once, to its full size
