"""genai-prices' providers and models as JSON: what :mod:`.pricetable`'s
child process prints (and what its cache file holds).

Run only in that child (``python -P -c "...priceexport import main; main()"``):
it imports genai-prices, which the receiver's own process never does.

A model's prices are written as genai-prices keeps them: a list of
``[when, four]``, the last active one winning, where ``when`` is None, a
start day (``"2025-06-01"``) or a daily interval in UTC microseconds
(``[start, end]``, DeepSeek's off-peak hours), and ``four`` the input,
output, cache read and cache write prices per million tokens, each None, a
decimal string, or ``[base, [[start, price], ...]]`` for prices tiered by
the call's input tokens. A model whose prices hold anything else is written
with prices None, and genai-prices in process prices its calls.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
# What the table's format is: written into its cache file's key, so that a
# cache written by an older export is not read as this one's.
FORMAT = 2
# genai-prices' price key of a per-request fee: a spanvisor call is one
# request, so it would cost every call; the table does not carry it.
_PER_REQUEST = "requests_kcount"


def rule(clause: Any) -> list[Any]:
    """A match clause as ``[kind, text]`` or ``["or" | "and", [clause, ...]]``."""
    for kind in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(clause, kind):
            return [kind, getattr(clause, kind)]
    if hasattr(clause, "or_"):
        return ["or", [rule(c) for c in clause.or_]]
    if hasattr(clause, "and_"):
        return ["and", [rule(c) for c in clause.and_]]
    raise TypeError(f"unknown genai-prices match clause {type(clause).__name__}")


def _value(price: Any) -> Any:
    from genai_prices.types import TieredPrices

    if price is None:
        return None
    if isinstance(price, Decimal):
        return str(price)
    if isinstance(price, TieredPrices) and all(t.start.__class__ is int for t in price.tiers):
        # genai-prices keeps them sorted by start; the order is kept as is
        return [str(price.base), [[t.start, str(t.price)] for t in price.tiers]]
    raise ValueError(f"a price the table does not carry: {price!r}")


def _carried(price: Any) -> bool:
    """Whether our four prices say all a call of spanvisor's costs at this
    price: every other price genai-prices holds is of a usage spanvisor
    never reports (audio, searches, ...; zero for every call), genai-prices
    accepts the set, and no price is per request."""
    from genai_prices.types import _collect_resolved_model_prices
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_priced_units

    registry = _get_registry()
    keys = {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}
    if _PER_REQUEST in keys or not keys <= registry._all_price_keys:
        return False
    try:
        validate_priced_units(tuple(u for u, _ in _collect_resolved_model_prices(price, registry)), registry)
    except ValueError:
        return False  # genai-prices refuses every call of it: it does so in process too
    return True


def _micros(t: time) -> int:
    """A time of day (naive: UTC) as microseconds after midnight UTC, as
    genai-prices compares times of day."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else datetime.combine(date(1970, 1, 1), t).astimezone(UTC).timetz()
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _when(constraint: Any) -> Any:
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    if constraint is None:
        return None
    if isinstance(constraint, StartDateConstraint):
        return constraint.start_date.isoformat()
    if isinstance(constraint, TimeOfDateConstraint):
        return [_micros(constraint.start_time), _micros(constraint.end_time)]
    raise ValueError(f"a constraint the table does not carry: {constraint!r}")


def prices(model: Any) -> list[Any] | None:
    """A model's prices as the table carries them, or None (genai-prices
    prices its calls in process)."""
    # classes by name: compiled by mypyc, ``from genai_prices import types`` here gave None
    from genai_prices.types import ModelPrice

    listed: list[tuple[Any, Any]]
    if isinstance(model.prices, ModelPrice):
        listed = [(None, model.prices)]
    else:
        listed = [(c.constraint, c.prices) for c in model.prices]
    try:
        out = [[_when(c), [_value(getattr(p, key, None)) for key in PRICE_KEYS]] for c, p in listed]
    except ValueError:
        return None
    flat = all(w is None or isinstance(w, str) for w, _ in out) and all(
        v is None or isinstance(v, str) for _, four in out for v in four
    )
    # Four flat prices by date are what spanvisor always took of a model
    # (its cached rates); any other shape was genai-prices' total on every
    # call, which the table must then give whole.
    if not flat and not all(_carried(p) for _, p in listed):
        return None
    return out or None


def export() -> dict[str, Any]:
    """genai-prices' bundled providers as JSON-able data."""
    from genai_prices import __version__
    from genai_prices.data_snapshot import get_snapshot

    providers = [
        [
            p.id,
            None if p.model_match is None else rule(p.model_match),
            None if p.provider_match is None else rule(p.provider_match),
            list(p.fallback_model_providers or ()),
            [[rule(m.match), prices(m)] for m in p.models],
        ]
        for p in get_snapshot().providers
    ]
    return {"format": FORMAT, "genai_prices": __version__, "providers": providers}


def main() -> None:
    json.dump(export(), sys.stdout, separators=(",", ":"))


__all__ = ["FORMAT", "PRICE_KEYS", "export", "main", "prices", "rule"]
