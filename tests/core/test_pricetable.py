"""genai-prices' models as plain data (serve's price table, built in a child
process) name the very model genai-prices does, and price its calls to the
very float genai-prices gives: flat, dated, tiered and hourly prices."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from genai_prices import Usage, calc_price, types
from genai_prices.data_snapshot import get_snapshot

from spanvisor.spans import conventions as cv
from spanvisor.tracking import priceexport, pricetable
from spanvisor.tracking.flatprices import dollars, flat_prices
from spanvisor.tracking.pricerates import Schedule
from spanvisor.tracking.prices import Pricer

_TABLE = pricetable.load(priceexport.export())
_DAYS = [date(2023, 1, 1), date(2025, 6, 1), datetime.now(UTC).date()]
# (input in all, cache read, cache write, output): what a call's cost reads
_USAGES = [(0, 0, 0, 0), (1, 0, 0, 1), (1234, 0, 0, 56), (300_001, 100_000, 20_000, 7), (5, 5, 0, 3)]


def _names(rule: Any) -> list[str]:
    kind, arg = rule
    if kind in ("or", "and"):
        return [n for r in arg for n in _names(r)]
    return [arg] if kind == "equals" else [arg + "-x"] if kind == "starts_with" else []


def _cases() -> list[tuple[str, str | None]]:
    cases: set[tuple[str, str | None]] = set()
    for p in get_snapshot().providers:
        for m in p.models:
            for name in {m.id, *_names(priceexport.rule(m.match))}:
                cases |= {(name, p.id), (name, None), (name, "litellm"), (name.upper(), p.id.upper())}
                cases.add((f"{p.id}/{name}", "litellm"))
    cases |= {("gpt-5.2-20251211", None), ("claude-sonnet-4-20250514", "nope"), ("no-such-model", None)}
    return sorted(cases, key=str)


def _not_flat() -> list[tuple[types.Provider, types.ModelInfo]]:
    """Every model whose prices are tiered or by the hour (156 of 2,330 in genai-prices 0.2.3)."""
    out = []
    for p in get_snapshot().providers:
        for m in p.models:
            listed = [m.prices] if isinstance(m.prices, types.ModelPrice) else [c.prices for c in m.prices]
            tiered = any(isinstance(v, types.TieredPrices) for price in listed for v in price.__dict__.values())
            hourly = isinstance(m.prices, list) and any(
                isinstance(c.constraint, types.TimeOfDateConstraint) for c in m.prices
            )
            if tiered or hourly:
                out.append((p, m))
    return out


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _genai_prices(model: str, provider: str | None, usage: tuple[int, int, int, int], end_ns: int) -> Any:
    """What spanvisor gave before the table: genai-prices' total for the call."""
    t_in, read, write, t_out = usage
    when = datetime.fromtimestamp(end_ns / 1e9, UTC)
    try:
        result = calc_price(
            Usage(
                input_tokens=t_in, cache_read_tokens=read or None, cache_write_tokens=write or None, output_tokens=t_out
            ),
            model_ref=model,
            provider_id=provider,
            genai_request_timestamp=when,
        )
    except LookupError:
        return LookupError
    return float(result.total_price)


def _table_cost(model: str, provider: str | None, usage: tuple[int, int, int, int], end_ns: int) -> Any:
    t_in, read, write, t_out = usage
    when = datetime.fromtimestamp(end_ns / 1e9, UTC)
    try:
        rates = pricetable.lookup(_TABLE, model, provider, when.date())
    except LookupError:
        return LookupError
    assert rates is not None, (model, provider)  # genai-prices' data holds no price the table leaves out
    if isinstance(rates, Schedule):
        return rates.dollars(t_in, read, write, t_out, end_ns)
    return dollars(rates, t_in - read - write, t_out, read, write)


def _flat_theirs(model: str, provider: str | None, day: date) -> Any:
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    try:
        result = calc_price(
            Usage(input_tokens=1, output_tokens=1), model_ref=model, provider_id=provider, genai_request_timestamp=when
        )
    except LookupError:
        return LookupError
    return flat_prices(result.model_price)


# Every model of genai-prices, priced both ways: 80-90 s alone, CPU-bound, so
# over 300 s on a loaded machine.
@pytest.mark.timeout_s(900)
def test_every_model_by_its_names_and_providers_is_found_and_priced_as_genai_prices_does() -> None:
    checked = 0
    for model, provider in _cases():
        for day in _DAYS:
            noon = _ns(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
            try:
                ours = pricetable.lookup(_TABLE, model, provider, day)
            except LookupError:
                ours = LookupError
            if isinstance(ours, Schedule):  # tiered or hourly: the call's total
                for usage in _USAGES[2:4]:
                    assert _table_cost(model, provider, usage, noon) == _genai_prices(model, provider, usage, noon)
            else:  # flat (or not found): the rates spanvisor always took of genai-prices
                assert ours == _flat_theirs(model, provider, day), (model, provider, day)
            checked += 1
    assert checked > 10_000


def _days() -> list[date]:
    starts = {
        c.constraint.start_date
        for p in get_snapshot().providers
        for m in p.models
        if isinstance(m.prices, list)
        for c in m.prices
        if isinstance(c.constraint, types.StartDateConstraint)
    }
    edges = {d + timedelta(days=k) for d in starts for k in (-1, 0)}
    return sorted(edges | {date(2023, 1, 1), datetime.now(UTC).date()})


def test_dated_prices_change_on_the_day_genai_prices_changes_them() -> None:
    for p in get_snapshot().providers:
        for m in p.models:
            if isinstance(m.prices, list):
                for day in _days():
                    noon = _ns(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
                    for usage in _USAGES[2:4]:
                        ours = _table_cost(m.id, p.id, usage, noon)
                        assert ours == _genai_prices(m.id, p.id, usage, noon), (m.id, p.id, day, usage)


def _starts(m: types.ModelInfo) -> list[int]:
    listed = [m.prices] if isinstance(m.prices, types.ModelPrice) else [c.prices for c in m.prices]
    return sorted(
        {
            t.start
            for price in listed
            for v in price.__dict__.values()
            if isinstance(v, types.TieredPrices)
            for t in v.tiers
        }
    )


def _times(m: types.ModelInfo, day: date) -> list[int]:
    """Noon, and every hourly price's start and end give or take a microsecond, on ``day``."""
    midnight = _ns(datetime(day.year, day.month, day.day, tzinfo=UTC))
    out = [midnight + 12 * 3600 * 10**9]
    for c in m.prices if isinstance(m.prices, list) else []:
        if isinstance(c.constraint, types.TimeOfDateConstraint):
            for t in (c.constraint.start_time, c.constraint.end_time):
                us = ((t.hour * 60 + t.minute) * 60 + t.second) * 10**6 + t.microsecond
                out += [midnight + (us + d) * 1000 for d in (-1, 0, 1)]
    return out


def test_tiered_and_hourly_prices_are_genai_prices_total_at_every_tier_and_hour_boundary() -> None:
    models = _not_flat()
    assert len(models) >= 100
    checked = 0
    for p, m in models:
        days = {datetime.now(UTC).date()}
        if isinstance(m.prices, list):
            for c in m.prices:
                if isinstance(c.constraint, types.StartDateConstraint):
                    days |= {c.constraint.start_date, c.constraint.start_date - timedelta(days=1)}
        inputs = {0, 1, 1000} | {s + d for s in _starts(m) for d in (-1, 0, 1) if s + d >= 0}
        for day in sorted(days):
            for end_ns in _times(m, day):
                for t_in in sorted(inputs):
                    for read, write in {(0, 0), (t_in // 3, t_in // 4), (t_in, 0), (0, t_in)}:
                        usage = (t_in, read, write, 4321)
                        ours = _table_cost(m.id, p.id, usage, end_ns)
                        assert ours == _genai_prices(m.id, p.id, usage, end_ns), (p.id, m.id, usage, end_ns)
                        checked += 1
    assert checked > 5_000


def _attrs(provider: str | None, read: int, write: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {"gen_ai.system": provider} if provider else {}
    if read:
        attrs[cv.GEN_AI_CACHE_READ] = read
    if write:
        attrs[cv.GEN_AI_CACHE_WRITE] = write
    return attrs


def test_a_pricer_with_the_table_prices_as_genai_prices_and_never_imports_it_for_tiers() -> None:
    table = Pricer()
    table.warm()
    assert table._table is not None  # built in a child process
    end_ns = _ns(datetime(2026, 3, 1, 12, tzinfo=UTC))
    for model, provider in [
        ("gpt-4o", "openai"),
        ("claude-sonnet-4-20250514", "anthropic"),
        ("gemini-2.5-pro", "google"),  # tiered at 200,000 input tokens
        ("claude-haiku-5-5", "anthropic"),  # tiered at 100,000
        ("qwen/qwen3-coder-flash", "openrouter"),  # two tiers
        ("deepseek-chat", "deepseek"),  # by the hour
    ]:
        for t_in, read, write, t_out in [(1234, 0, 0, 56), (200_000, 0, 0, 9), (200_001, 50_000, 1000, 9)]:
            got = table.price(_attrs(provider, read, write), model, t_in, t_out, end_ns)
            assert got.source == "genai-prices"
            assert got.usd == _genai_prices(model, provider, (t_in, read, write, t_out), end_ns), (model, t_in)
    assert table._calc is None  # genai-prices was not imported in process
    assert table.price({}, "no-such-model", 1, 1, end_ns).source == "unpriced"


def test_hourly_prices_differ_within_one_day_with_or_without_the_table() -> None:
    """DeepSeek's off-peak prices: two calls of one day, at peak and off-peak
    hours, cost what genai-prices says of each (not the day's first price)."""
    table, plain = Pricer(), Pricer()
    table.warm()
    peak, off = (_ns(datetime(2026, 3, 1, h, tzinfo=UTC)) for h in (12, 20))
    for pricer in (table, plain):
        for end_ns in (peak, off, peak):
            got = pricer.price({"gen_ai.system": "deepseek"}, "deepseek-chat", 10_000, 500, end_ns)
            assert got.usd == _genai_prices("deepseek-chat", "deepseek", (10_000, 0, 0, 500), end_ns)
    assert (
        table.price({}, "deepseek-chat", 10_000, 500, peak).usd
        != table.price({}, "deepseek-chat", 10_000, 500, off).usd
    )


def test_without_genai_prices_the_table_fails_and_pricing_is_as_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", sys.executable + "-missing")
    with pytest.raises(OSError):
        pricetable.build()
    p = Pricer()
    p.warm()  # falls back to genai-prices in this process
    assert p._table is None
    assert p.price({}, "gpt-4o", 10, 10, 0).source == "genai-prices"


def _a_price_change() -> tuple[str, str, datetime]:
    """A model, its provider and the midnight (UTC) its price changes at."""
    for p in get_snapshot().providers:
        for m in p.models:
            if isinstance(m.prices, list):
                for c in m.prices:
                    if isinstance(c.constraint, types.StartDateConstraint):
                        s = c.constraint.start_date
                        change = datetime(s.year, s.month, s.day, tzinfo=UTC)
                        before, after = (_ns(change + timedelta(hours=h)) for h in (-12, 12))
                        usage = (1_000_000, 0, 0, 0)
                        if _genai_prices(m.id, p.id, usage, before) != _genai_prices(m.id, p.id, usage, after):
                            return m.id, p.id, change
    raise AssertionError("genai-prices' data holds no price that changes on a date")


def test_a_call_just_before_a_price_change_does_not_price_that_days_other_calls() -> None:
    """genai-prices sees a call 1 ns before midnight at midnight (its float
    seconds round up): that call costs the next day's price, and the calls
    of the day before still cost the day before's."""
    model, provider, change = _a_price_change()
    last_ns, noon = _ns(change) - 1, _ns(change - timedelta(hours=12))
    table, plain = Pricer(), Pricer()
    table.warm()
    for pricer in (table, plain):
        for end_ns in (last_ns, noon, _ns(change) + 1):
            got = pricer.price({"gen_ai.system": provider}, model, 1_000_000, 0, end_ns)
            assert got.usd == _genai_prices(model, provider, (1_000_000, 0, 0, 0), end_ns), (pricer, end_ns)
