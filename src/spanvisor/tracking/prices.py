"""What model calls cost.

A call's cost is, in order: the cost its instrumentation already put on the
span (``llm.cost.total``, ``gen_ai.usage.cost``); an operator's price for the
model (``SPANVISOR_MODEL_PRICES``, longest prefix of the model name, per
million tokens); else `genai-prices`_ for the model and provider at the
call's time (historical prices apply), with cache reads and writes priced
apart. A model no source knows is **unpriced**: counted, never guessed.
Prices are estimates. What the spending crosses is :mod:`.cost`'s.

.. _genai-prices: https://github.com/pydantic/genai-prices
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.tracking import pricetable
from spanvisor.tracking.flatprices import FlatPrices, dollars, flat_prices
from spanvisor.tracking.pricerates import Schedule

log = logging.getLogger("spanvisor.cost")

CostSource = Literal["reported", "configured", "genai-prices", "unpriced"]
# A price per million tokens: input, output, cached input read (None: as input).
Price = tuple[float, float, float | None]


@dataclass(frozen=True, slots=True)
class CallCost:
    usd: float | None
    source: CostSource


class Pricer:
    """Prices model calls; ``overrides`` map a model name prefix to a Price."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._overrides = sorted(((k.lower(), v) for k, v in (overrides or {}).items()), key=lambda kv: -len(kv[0]))
        self._calc: Any = None
        self._unknown: set[tuple[str, str | None]] = set()
        # (model, provider, UTC day) -> flat prices, the table's schedule of
        # tiered or hourly ones, or None (genai-prices prices every call)
        self._rates: dict[tuple[str, str | None, int], FlatPrices | Schedule | None] = {}
        # genai-prices' models as plain data (:mod:`.pricetable`), once warmed
        self._table: tuple[pricetable.Provider, ...] | None = None

    def price(self, attrs: Mapping[str, Any], model: str | None, t_in: int, t_out: int, end_ns: int) -> CallCost:
        reported = cv.reported_cost(attrs)
        reported_ok = isinstance(reported, int | float) and not isinstance(reported, bool)
        if reported_ok and math.isfinite(reported) and 0 <= reported < 1e6:
            return CallCost(float(reported), "reported")
        if not model:
            return CallCost(None, "unpriced")
        read = write = 0
        if not _CACHE_KEYS.isdisjoint(attrs):  # most calls say nothing of a cache
            raw_read, raw_write = cv.cache_usage(attrs)
            read = sz.tokens(raw_read, "cache_read", []) or 0
            write = sz.tokens(raw_write, "cache_write", []) or 0
        configured = self._configured(model) if self._overrides else None
        if configured is not None:
            per_in, per_out, per_read = configured
            cached = min(read, t_in)
            usd = (
                (t_in - cached) * per_in + cached * (per_in if per_read is None else per_read) + t_out * per_out
            ) / 1e6
            return CallCost(usd, "configured")
        provider = sz.name(cv.provider(attrs), "provider", [])
        return self._genai_prices(model, provider, t_in, read, write, t_out, end_ns)

    def warm(self, cache_dir: Path | None = None) -> None:
        """Read genai-prices' models now, off the hot path: for a receiver,
        before it accepts spans (its first model call otherwise stalls the
        pipeline thread ~0.3 s on the import). They are read in a child
        process, or from the table's cache file in ``cache_dir``
        (:mod:`.pricetable`), so that this process never holds genai-prices;
        should that fail, genai-prices is imported here, as without the
        table. Never in an agent."""
        try:
            self._table = pricetable.build(cache_dir)
            return
        except Exception as exc:
            log.info("genai-prices read in this process (its table's process failed: %s)", exc)
        try:
            self._calc_price("gpt-4o", "openai", 1, 0, 0, 1, 0)
        except Exception as exc:  # pricing then says why on its first call
            log.debug("genai-prices warm-up: %s", exc)

    def _configured(self, model: str) -> Price | None:
        name = model.lower()
        return next((p for k, p in self._overrides if name.startswith(k)), None)

    def _genai_prices(
        self, model: str, provider: str | None, t_in: int, read: int, write: int, t_out: int, end_ns: int
    ) -> CallCost:
        if (model, provider) in self._unknown:
            if provider is not None:
                return self._genai_prices(model, None, t_in, read, write, t_out, end_ns)
            return CallCost(None, "unpriced")
        read, write = min(read, t_in), min(write, max(0, t_in - read))
        day = _utc_day(end_ns)
        try:
            rates: Any = self._rates.get((model, provider, day), _MISSING)
            if rates is _MISSING:
                # genai-prices' own calculation, once per model, provider and
                # day (prices change by date): ~150 us a call was a third of
                # the pipeline thread's time under an all-agent load.
                listed: Any = None
                if self._table is not None:
                    listed = pricetable.lookup(self._table, model, provider, date.fromordinal(day))
                if listed is not None:
                    rates = listed
                else:  # no table, or prices the table does not hold
                    result = self._calc_price(model, provider, t_in, read, write, t_out, end_ns)
                    # prices by the hour of the day change within the day: never cached
                    rates = None if _by_hour(result.model) else flat_prices(result.model_price)
                    if rates is None:
                        if len(self._rates) < 4096:
                            self._rates[(model, provider, day)] = rates
                        return CallCost(float(result.total_price), "genai-prices")
                if len(self._rates) < 4096:
                    self._rates[(model, provider, day)] = rates
            if rates is None:  # without the table, tiered or hourly prices: genai-prices decides every call
                result = self._calc_price(model, provider, t_in, read, write, t_out, end_ns)
                return CallCost(float(result.total_price), "genai-prices")
            if isinstance(rates, Schedule):  # the table's tiered or hourly prices
                return CallCost(rates.dollars(t_in, read, write, t_out, end_ns), "genai-prices")
            return CallCost(dollars(rates, t_in - read - write, t_out, read, write), "genai-prices")
        except LookupError:
            if len(self._unknown) < 10_000:
                self._unknown.add((model, provider))
            if provider is not None:
                # A provider genai-prices does not know (a framework's own
                # name for a test or proxy model): the model's name alone.
                return self._genai_prices(model, None, t_in, read, write, t_out, end_ns)
            return CallCost(None, "unpriced")
        except Exception as exc:  # a pricing bug must never cost the task its events
            log.warning("cannot price a call to %s: %s", model, exc)
            return CallCost(None, "unpriced")

    def _calc_price(
        self, model: str, provider: str | None, t_in: int, read: int, write: int, t_out: int, end_ns: int
    ) -> Any:
        if self._calc is None:
            # Imported on first use, on the pipeline's thread: never in an agent's import.
            from genai_prices import Usage, calc_price

            self._calc = (Usage, calc_price)
        usage_cls, calc = self._calc
        usage = usage_cls(
            input_tokens=t_in, cache_read_tokens=read or None, cache_write_tokens=write or None, output_tokens=t_out
        )
        when = datetime.fromtimestamp(end_ns / 1e9, UTC) if end_ns > 0 else None
        return calc(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when)


def _utc_day(end_ns: int) -> int:
    """The UTC day (its ordinal) genai-prices prices a call ending at
    ``end_ns`` on (<= 0: today): the rates' cache key and the day the table
    is read for, one value for both. genai-prices is given the call's time
    as a float of seconds rounded to the microsecond, which within a
    microsecond of midnight can fall on the other day than the
    nanoseconds' (the next day's prices cached under today's key, for the
    rest of the day); only there is the datetime made."""
    if end_ns <= 0:
        return datetime.now(UTC).toordinal()
    days, rest = divmod(end_ns, DAY_NS)
    if _NEAR_MIDNIGHT_NS <= rest <= DAY_NS - _NEAR_MIDNIGHT_NS:
        return _EPOCH_DAY + days
    return datetime.fromtimestamp(end_ns / 1e9, UTC).toordinal()


def _by_hour(model: Any) -> bool:
    """Whether a genai-prices model has prices by the time of day (DeepSeek's off-peak hours)."""
    listed = getattr(model, "prices", None)
    return isinstance(listed, list) and any(
        type(getattr(c, "constraint", None)).__name__ == "TimeOfDateConstraint" for c in listed
    )


DAY_NS = 86_400 * 10**9
_EPOCH_DAY = date(1970, 1, 1).toordinal()
# How near midnight the float seconds may round over it: a microsecond of
# rounding and the float's own error (a quarter microsecond today), with room
_NEAR_MIDNIGHT_NS = 1_000_000
_CACHE_KEYS = frozenset({cv.GEN_AI_CACHE_READ, cv.OI_CACHE_READ, cv.GEN_AI_CACHE_WRITE, cv.OI_CACHE_WRITE})
_MISSING: Any = object()


__all__ = ["CallCost", "CostSource", "Price", "Pricer"]
