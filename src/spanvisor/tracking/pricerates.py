"""A model's prices on one day, from the price table's plain data, as
:mod:`.flatprices` rates: bit for bit the float genai-prices' calculation
gives, tiered and hourly prices included.

genai-prices prices a call as the sum, over the prices a model has, of
price x tokens / 1,000,000 in Decimal, where a tiered price is the price of
the highest tier whose start the call's input tokens (cache reads and writes
included) exceed, applied to all of the call's tokens of that kind; and of
a model's dated or hourly prices the last one active wins (the first one
when none is). So on one day a model's prices are, for each span of the
day's time (a daily interval, or the rest of the day) and each band of
input tokens between two tier starts, four flat prices: their rates give
the call's dollars exactly (:func:`.flatprices.dollars`; every other price
genai-prices holds for a model the table carries is of a usage spanvisor
never reports, zero on every call).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from spanvisor.tracking.flatprices import FlatPrices, dollars, flat_prices

# A price per million tokens: a decimal string, or a tiered price (the base
# and the tiers' (start, price), sorted by start), or None.
Value = str | tuple[str, tuple[tuple[int, str], ...]] | None
Four = tuple[Value, Value, Value, Value]
# When a price applies: always (None), from a UTC day on ("2025-06-01"), or
# every day between two times of day (microseconds after midnight UTC).
When = str | tuple[int, int] | None
Prices = tuple[tuple[When, Four], ...]
# The rates by input tokens: the tier starts, and the rates of each band
# (one more than the starts: up to the first, then above each).
Bands = tuple[tuple[int, ...], tuple[FlatPrices, ...]]


class Schedule:
    """A model's rates on one day when they depend on the call's input
    tokens or its time of day."""

    __slots__ = ("default", "hours")

    def __init__(self, hours: tuple[tuple[int, int, Bands], ...], default: Bands) -> None:
        self.hours = hours
        self.default = default

    def dollars(self, t_in: int, read: int, write: int, t_out: int, end_ns: int) -> float:
        """The call's dollars as genai-prices gives them for ``t_in`` input
        tokens in all, ``read``/``write`` of them cache reads/writes (already
        within ``t_in``), ending at ``end_ns`` (<= 0: now)."""
        bands = self.default
        if self.hours:
            # the request time genai-prices is given: the same datetime, rounded the same way
            when = datetime.fromtimestamp(end_ns / 1e9, UTC) if end_ns > 0 else datetime.now(UTC)
            us = ((when.hour * 60 + when.minute) * 60 + when.second) * 1_000_000 + when.microsecond
            for start, end, hour_bands in self.hours:
                if (us >= start or us < end) if end < start else start <= us < end:
                    bands = hour_bands
                    break
        starts, rates = bands
        flat = rates[bisect_left(starts, t_in)] if starts else rates[0]
        return dollars(flat, t_in - read - write, t_out, read, write)


def on_day(prices: Prices, day: date) -> FlatPrices | Schedule:
    """The model's rates on ``day`` (UTC): flat rates when they are the
    same for every call of the day, else a :class:`Schedule`."""
    hours: list[tuple[int, int, Four]] = []
    chosen: Four | None = None
    for when, four in reversed(prices):  # the last active price wins
        if when is None:
            chosen = four
            break
        if isinstance(when, str):
            if day >= date.fromisoformat(when):
                chosen = four
                break
        else:
            hours.append((when[0], when[1], four))
    default = _bands(prices[0][1] if chosen is None else chosen)
    if not hours and not default[0]:
        return default[1][0]
    return Schedule(tuple((start, end, _bands(four)) for start, end, four in hours), default)


def _bands(four: Four) -> Bands:
    starts = sorted({start for v in four if isinstance(v, tuple) for start, _ in v[1]})
    # a count of input tokens in each band: at most the first start, then one above each
    samples = [starts[0], *(s + 1 for s in starts)] if starts else [0]
    return tuple(starts), tuple(_flat(four, t_in) for t_in in samples)


def _flat(four: Four, t_in: int) -> FlatPrices:
    per_in, per_out, read, write = (_price(v, t_in) for v in four)
    rates = flat_prices(_Price(per_in, per_out, read, write))
    if rates is None:  # never: every price here is a Decimal
        raise ValueError(f"prices that are not numbers: {four!r}")
    return rates


def _price(value: Value, t_in: int) -> Decimal | None:
    """The price per million tokens for a call of ``t_in`` input tokens, as
    genai-prices picks it (``calc_unit_price``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return Decimal(value)
    base, tiers = value
    for start, price in reversed(tiers):
        if t_in > start:
            return Decimal(price)
    return Decimal(base)


class _Price:
    """The four prices under genai-prices' names (what flat_prices reads)."""

    __slots__ = ("cache_read_mtok", "cache_write_mtok", "input_mtok", "output_mtok")

    def __init__(
        self, per_in: Decimal | None, per_out: Decimal | None, read: Decimal | None, write: Decimal | None
    ) -> None:
        self.input_mtok = per_in
        self.output_mtok = per_out
        self.cache_read_mtok = read
        self.cache_write_mtok = write


def as_value(raw: Any) -> Value:
    """A price read back from JSON (lists where the table keeps tuples);
    ValueError for one that is no price: not a finite decimal string >= 0,
    or tiers whose starts are not ascending ints >= 0."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return _decimal(raw)
    base, tiers = raw
    out: list[tuple[int, str]] = []
    for start, price in tiers:
        if not isinstance(start, int) or isinstance(start, bool) or start < 0 or (out and start <= out[-1][0]):
            raise ValueError(f"not ascending tier starts: {tiers!r}")
        out.append((start, _decimal(price)))
    return (_decimal(base), tuple(out))


def as_when(raw: Any) -> When:
    """When a price applies, read back from JSON; ValueError for a day that
    is no ISO date or a daily interval that is not two times of the day."""
    if raw is None:
        return None
    if isinstance(raw, str):
        date.fromisoformat(raw)
        return raw
    start, end = raw
    for t in (start, end):
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < _DAY_US:
            raise ValueError(f"not a daily interval: {raw!r}")
    return (start, end)


def _decimal(raw: Any) -> str:
    """``raw`` when it is a price: a decimal string, finite (as the float
    the rates are made of too) and not negative."""
    if not isinstance(raw, str):
        raise ValueError(f"not a price: {raw!r}")
    try:
        value = Decimal(raw)
    except ArithmeticError:  # decimal's InvalidOperation
        raise ValueError(f"not a price: {raw!r}") from None
    if not value.is_finite() or value < 0 or not math.isfinite(float(value)):
        raise ValueError(f"not a price: {raw!r}")
    return raw


_DAY_US = 86_400 * 1_000_000


__all__ = ["Bands", "Four", "Prices", "Schedule", "Value", "When", "as_value", "as_when", "on_day"]
