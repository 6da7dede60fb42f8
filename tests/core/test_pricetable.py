"""genai-prices' models as plain data (serve's price table, built in a child
process) name the very model and flat prices genai-prices itself does."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from spanvisor.tracking import pricetable
from spanvisor.tracking.flatprices import flat_prices
from spanvisor.tracking.prices import Pricer

_TABLE = pricetable.load(pricetable.export())


def _names(rule: Any) -> list[str]:
    kind, arg = rule
    if kind in ("or", "and"):
        return [n for r in arg for n in _names(r)]
    return [arg] if kind == "equals" else [arg + "-x"] if kind == "starts_with" else []


def _cases() -> list[tuple[str, str | None]]:
    cases: set[tuple[str, str | None]] = set()
    for p in get_snapshot().providers:
        for m in p.models:
            for name in {m.id, *_names(pricetable._rule(m.match))}:
                cases |= {(name, p.id), (name, None), (name, "litellm"), (name.upper(), p.id.upper())}
                cases.add((f"{p.id}/{name}", "litellm"))
    cases |= {("gpt-5.2-20251211", None), ("claude-sonnet-4-20250514", "nope"), ("no-such-model", None)}
    return sorted(cases, key=str)


def _days() -> list[date]:
    starts = {
        c.constraint.start_date
        for p in get_snapshot().providers
        for m in p.models
        if isinstance(m.prices, list)
        for c in m.prices
        if c.constraint is not None and hasattr(c.constraint, "start_date")
    }
    edges = {d + timedelta(days=k) for d in starts for k in (-1, 0)}
    return sorted(edges | {date(2023, 1, 1), datetime.now(UTC).date()})


def _theirs(model: str, provider: str | None, day: date) -> Any:
    when = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    try:
        result = calc_price(
            Usage(input_tokens=1, output_tokens=1), model_ref=model, provider_id=provider, genai_request_timestamp=when
        )
    except LookupError:
        return LookupError
    return flat_prices(result.model_price)


def _ours(model: str, provider: str | None, day: date) -> Any:
    try:
        listed = pricetable.lookup(_TABLE, model, provider, day)
    except LookupError:
        return LookupError
    return "genai-prices in process" if listed is None else flat_prices(listed)


def test_every_model_by_its_names_and_providers_is_found_as_genai_prices_finds_it() -> None:
    days = [date(2023, 1, 1), date(2025, 6, 1), datetime.now(UTC).date()]
    checked = 0
    for model, provider in _cases():
        for day in days:
            ours = _ours(model, provider, day)
            if ours != "genai-prices in process":
                assert ours == _theirs(model, provider, day), (model, provider, day)
                checked += 1
    assert checked > 10_000


def test_dated_prices_change_on_the_day_genai_prices_changes_them() -> None:
    for p in get_snapshot().providers:
        for m in p.models:
            if isinstance(m.prices, list):
                for day in _days():
                    ours = _ours(m.id, p.id, day)
                    if ours != "genai-prices in process":
                        assert ours == _theirs(m.id, p.id, day), (m.id, p.id, day)


def test_a_pricer_with_the_table_prices_as_one_without() -> None:
    table = Pricer()
    table.warm()
    assert table._table is not None  # built in a child process
    plain = Pricer()
    end_ns = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1e9)
    for model, provider in [
        ("gpt-4o", "openai"),
        ("claude-sonnet-4-20250514", "anthropic"),
        ("gemini-2.5-pro", "google"),
        ("no-such-model", None),
        ("gpt-4o", "nope"),
    ]:
        attrs = {"gen_ai.system": provider} if provider else {}
        for t_in, t_out in [(1234, 56), (300_000, 10)]:
            assert table.price(attrs, model, t_in, t_out, end_ns) == plain.price(attrs, model, t_in, t_out, end_ns)


def test_without_genai_prices_the_table_fails_and_pricing_is_as_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", sys.executable + "-missing")
    with pytest.raises(OSError):
        pricetable.build()
    p = Pricer()
    p.warm()  # falls back to genai-prices in this process
    assert p._table is None
    assert p.price({}, "gpt-4o", 10, 10, 0).source == "genai-prices"
