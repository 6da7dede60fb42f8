"""What model calls cost, and which budgets that spending crosses.

**Prices.** A call's cost is, in order: the cost its instrumentation already
put on the span (``llm.cost.total``, ``gen_ai.usage.cost``); an operator's
price for the model (``SPANVISOR_MODEL_PRICES``, longest prefix of the model
name, per million tokens); else `genai-prices`_ for the model and provider at
the call's time (historical prices apply), with cache reads and writes priced
apart. A model no source knows is **unpriced**: counted, never guessed.
Prices are estimates.

**Budgets.** A task may carry ``agent.budget.usd`` / ``agent.budget.tokens``
on its root (or get its agent's default); an agent may have a daily dollar
budget, and all agents together a daily and a monthly one. Each level (80 %
and 100 % by default) is said once per crossing, per scope and per day or
month. Day and month totals are kept per process (a restart or another
replica starts from zero); see ``docs/conventions.md#cost-and-budgets``.

.. _genai-prices: https://github.com/pydantic/genai-prices
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from spanvisor.events import BudgetScope
from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz

log = logging.getLogger("spanvisor.cost")

# Costs are summed in nano-dollars: a level reached within that is reached.
EPSILON = 1e-9

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
        # (model, provider, UTC day) -> flat prices, or None for tiered ones
        self._rates: dict[tuple[str, str | None, int], Rates | None] = {}

    def price(self, attrs: Mapping[str, Any], model: str | None, t_in: int, t_out: int, end_ns: int) -> CallCost:
        reported = attrs.get(cv.OI_COST, attrs.get(cv.GEN_AI_COST))
        reported_ok = isinstance(reported, int | float) and not isinstance(reported, bool)
        if reported_ok and math.isfinite(reported) and 0 <= reported < 1e6:
            return CallCost(float(reported), "reported")
        if not model:
            return CallCost(None, "unpriced")
        raw_read, raw_write = cv.cache_usage(attrs)
        read = sz.tokens(raw_read, "cache_read", []) or 0
        write = sz.tokens(raw_write, "cache_write", []) or 0
        configured = self._configured(model)
        if configured is not None:
            per_in, per_out, per_read = configured
            cached = min(read, t_in)
            usd = (
                (t_in - cached) * per_in + cached * (per_in if per_read is None else per_read) + t_out * per_out
            ) / 1e6
            return CallCost(usd, "configured")
        provider = sz.name(cv.provider(attrs), "provider", [])
        return self._genai_prices(model, provider, t_in, read, write, t_out, end_ns)

    def _configured(self, model: str) -> Price | None:
        name = model.lower()
        return next((p for k, p in self._overrides if name.startswith(k)), None)

    def _genai_prices(
        self, model: str, provider: str | None, t_in: int, read: int, write: int, t_out: int, end_ns: int
    ) -> CallCost:
        if (model, provider) in self._unknown:
            return CallCost(None, "unpriced")
        read, write = min(read, t_in), min(write, max(0, t_in - read))
        day = int(end_ns // DAY_NS) if end_ns > 0 else -1
        try:
            rates = self._rates.get((model, provider, day), _MISSING)
            if rates is _MISSING:
                # genai-prices' own calculation, once per model, provider and
                # day (prices change by date): ~150 us a call was a third of
                # the pipeline thread's time under an all-agent load.
                result = self._calc_price(model, provider, t_in, read, write, t_out, end_ns)
                rates = _flat_rates(result.model_price)
                if len(self._rates) < 4096:
                    self._rates[(model, provider, day)] = rates
                if rates is None:
                    return CallCost(float(result.total_price), "genai-prices")
            if rates is None:  # tiered or unusual prices: genai-prices decides every call
                result = self._calc_price(model, provider, t_in, read, write, t_out, end_ns)
                return CallCost(float(result.total_price), "genai-prices")
            per_in, per_out, per_read, per_write = rates
            total = Decimal(t_in - read - write) * per_in + Decimal(t_out) * per_out
            total += Decimal(read) * per_read + Decimal(write) * per_write
            return CallCost(float(total / _MILLION), "genai-prices")
        except LookupError:
            if len(self._unknown) < 10_000:
                self._unknown.add((model, provider))
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


DAY_NS = 86_400 * 10**9
_MILLION = Decimal(1_000_000)
_MISSING: Any = object()
Rates = tuple[Decimal, Decimal, Decimal, Decimal]


def _flat_rates(price: Any) -> Rates | None:
    """A model's per-million-token prices when they are flat numbers (input,
    output, cache read, cache write; cache prices default to input's), else
    None (tiered prices: genai-prices computes every call)."""
    values = [
        getattr(price, name, None) for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
    ]
    per_in, per_out, per_read, per_write = values
    per_in = per_in if per_in is not None else Decimal(0)
    per_out = per_out if per_out is not None else Decimal(0)
    per_read = per_read if per_read is not None else per_in
    per_write = per_write if per_write is not None else per_in
    rates = (per_in, per_out, per_read, per_write)
    return rates if all(isinstance(r, Decimal) for r in rates) else None


@dataclass
class BudgetSettings:
    levels: tuple[float, ...] = (0.8, 1.0)
    # agent id -> dollars per task / per day; "*" applies to every agent
    task_usd: Mapping[str, float] = field(default_factory=dict)
    agent_day_usd: Mapping[str, float] = field(default_factory=dict)
    day_usd: float | None = None
    month_usd: float | None = None

    def for_agent(self, table: Mapping[str, float], agent: str) -> float | None:
        return table.get(agent, table.get("*"))


Crossing = tuple[BudgetScope, str, float, float, float]  # scope, subject, level, used, budget


class Ledger:
    """Per-process spending by agent and day, and by day and month, with the
    budget levels already said for each (bounded: old days are forgotten)."""

    def __init__(self, settings: BudgetSettings) -> None:
        self.settings = settings
        self._spent: dict[str, float] = {}
        self._said: set[tuple[str, str, float]] = set()

    def add(self, agent: str, usd: float, end_ns: int) -> list[Crossing]:
        s = self.settings
        when = datetime.fromtimestamp(max(0, end_ns) / 1e9, UTC)
        day, month = when.strftime("%Y-%m-%d"), when.strftime("%Y-%m")
        out: list[Crossing] = []
        scopes: list[tuple[BudgetScope, str, str, float | None]] = [
            ("agent_day", f"{agent}:{day}", f"agent:{agent}:{day}", s.for_agent(s.agent_day_usd, agent)),
            ("day", day, f"day:{day}", s.day_usd),
            ("month", month, f"month:{month}", s.month_usd),
        ]
        for scope, subject, key, budget in scopes:
            before = self._spent.get(key, 0.0)
            now = before + usd
            self._spent[key] = now
            out.extend(self._crossed(scope, subject, key, before, now, budget))
        self._forget_old(day)
        return out

    def _crossed(
        self, scope: BudgetScope, subject: str, key: str, before: float, now: float, budget: float | None
    ) -> list[Crossing]:
        if not budget or budget <= 0:
            return []
        out: list[Crossing] = []
        for level in self.settings.levels:
            if before < level * budget - EPSILON <= now and (key, "usd", level) not in self._said:
                self._said.add((key, "usd", level))
                out.append((scope, subject, level, now, budget))
        return out

    def _forget_old(self, today: str) -> None:
        if len(self._spent) < 4096:
            return
        self._spent = {k: v for k, v in self._spent.items() if today in k or k.startswith("month:")}
        self._said = {s for s in self._said if today in s[0] or s[0].startswith("month:")}


__all__ = ["EPSILON", "BudgetSettings", "CallCost", "Crossing", "Ledger", "Price", "Pricer"]
