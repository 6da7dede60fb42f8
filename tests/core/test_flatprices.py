"""Flat genai-prices rates priced in ints give the very float the Decimal sum gave."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.tracking.flatprices import dollars, flat_prices

_MILLION = Decimal(1_000_000)


def _decimal_sum(rates: tuple[Decimal, ...], plain_in: int, t_out: int, read: int, write: int) -> float:
    """The computation cost.py did before (and still does past 28 digits)."""
    total = Decimal(plain_in) * rates[0] + Decimal(t_out) * rates[1]
    total += Decimal(read) * rates[2] + Decimal(write) * rates[3]
    return float(total / _MILLION)


_price = st.one_of(
    st.none(),
    st.builds(lambda n, k: Decimal(n).scaleb(-k), st.integers(0, 10**30), st.integers(-3, 14)),
    st.sampled_from([Decimal("3"), Decimal("0.3"), Decimal("3.75"), Decimal("0.075"), Decimal("1E+1")]),
)
_tokens = st.one_of(st.integers(0, 2_000_000), st.integers(0, 10**22))


@settings(max_examples=3000, deadline=None)
@given(
    prices=st.tuples(_price, _price, _price, _price),
    counts=st.tuples(_tokens, _tokens, _tokens, _tokens),
)
def test_ints_give_the_decimal_sums_float(
    prices: tuple[Decimal | None, ...], counts: tuple[int, int, int, int]
) -> None:
    names = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    flat = flat_prices(SimpleNamespace(**dict(zip(names, prices, strict=True))))
    assert flat is not None
    assert dollars(flat, *counts) == _decimal_sum(flat[1], *counts)


def test_tiered_or_odd_prices_are_not_flat() -> None:
    assert flat_prices(SimpleNamespace(input_mtok=object(), output_mtok=Decimal(1))) is None
    odd = flat_prices(SimpleNamespace(input_mtok=Decimal("NaN"), output_mtok=Decimal(-1)))
    assert odd is not None and odd[0] is None  # the Decimal sum, every call
    negative = flat_prices(SimpleNamespace(input_mtok=Decimal(-2)))
    assert negative is not None and dollars(negative, 1_000_000, 0, 0, 0) == -2.0


def test_a_warmed_pricer_prices_as_a_cold_one() -> None:
    """serve warms its pricer before it is ready (the genai-prices import
    stalled the first model call): warming caches no rate a call would then
    read, so every price is the one a cold pricer gives."""
    from spanvisor.tracking.prices import Pricer

    warm, cold = Pricer(), Pricer()
    warm.warm()
    end_ns = 1_760_000_000 * 10**9
    for model, provider in (("gpt-4o", "openai"), ("claude-sonnet-4-5", "anthropic"), ("no-such-model", None)):
        attrs = {"gen_ai.system": provider} if provider else {}
        assert warm.price(attrs, model, 1234, 56, end_ns) == cold.price(attrs, model, 1234, 56, end_ns)
