"""What model calls cost.

A call's cost is, in order: the cost its instrumentation already put on the
span (``llm.cost.total``, ``gen_ai.usage.cost``); an operator's price for the
model (``SPANVISOR_MODEL_PRICES``, longest prefix of the model name, per
million tokens); else `genai-prices`_ for the model and provider at the
call's time (historical prices apply), with cache reads and writes priced
apart. A model no source knows is **unpriced**: counted, never guessed.
Prices are estimates. What the spending crosses is :mod:`.cost`'s.

genai-prices is read as plain data (:mod:`.pricetable`: built in a child
process or read from its cache file), on every path. The library itself is
imported only by the thread that built the Pricer (an agent's, building its
processor; a test's) or, once :meth:`Pricer.warm` allows it, by any (``serve``,
where no agent's code runs): on spanvisor's own thread in an agent, a
half-done import of genai-prices (and httpx) is visible in ``sys.modules`` to
the agent's threads, and openai reads ``sys.modules["httpx"]`` on every
request. A call only the library could price is then unpriced, with the
reason said once.

.. _genai-prices: https://github.com/pydantic/genai-prices
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from spanvisor.spans import conventions as cv
from spanvisor.spans import sanitize as sz
from spanvisor.spans.current import GEN_AI_CACHE_WRITE_NEW
from spanvisor.tracking import pricetable
from spanvisor.tracking.flatprices import FlatPrices, dollars, flat_prices
from spanvisor.tracking.pricerates import Schedule

log = logging.getLogger("spanvisor.cost")

CostSource = Literal["reported", "configured", "genai-prices", "unpriced"]
# How long pricing waits for a table being read (see Pricer.expect_table):
# the child takes about a second of CPU; a start under load, several.
TABLE_WAIT_S = 30.0
# A price per million tokens: input, output, cached input read (None: as input).
Price = tuple[float, float, float | None]


class PricesUnavailable(Exception):
    """genai-prices may not be imported on this thread (see the module's doc)."""


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
        # Set while no table is being read; cleared by expect_table until warm ends.
        self._settled = threading.Event()
        self._settled.set()
        # The thread that may import genai-prices (None: any; see the module's doc).
        self._importer: threading.Thread | None = threading.current_thread()
        # Why genai-prices cannot price here (the table's failure), and whether it was said.
        self._unavailable: str | None = None
        self._said = False

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

    def expect_table(self) -> None:
        """A :meth:`warm` is on its way (on another thread): pricing waits
        for it (at most TABLE_WAIT_S) rather than price without the table.
        Called on the pricing thread before it starts the warm-up."""
        if self._table is None:
            self._settled.clear()

    @property
    def reading(self) -> bool:
        """A :meth:`warm` is under way and pricing would wait for it."""
        return not self._settled.is_set()

    def stop_waiting(self, why: str) -> None:
        """Price without the table from now on while it is still being read
        (a pipeline shutting down: its last events must not wait for the
        child's second, nor be lost at exit for it). Calls only the table or
        genai-prices could price are unpriced, and why is said once."""
        if self._table is None and not self._settled.is_set():
            self._unavailable = self._unavailable or why
            self._settled.set()

    def abandon(self, why: str) -> None:
        """:meth:`stop_waiting`, and stop the table's child if it still runs
        (the process is shutting down: its exit must not wait for it)."""
        self.stop_waiting(why)
        pricetable.abandon()

    def warm(self, cache_dir: Path | None = None, *, may_import: bool = True, timeout_s: float = 120.0) -> None:
        """Read genai-prices' models now, off the hot path, before the first
        call is priced. They are read in a child process, or from the
        table's cache file in ``cache_dir`` (:mod:`.pricetable`), so that
        this process never holds genai-prices. Should that fail: with
        ``may_import`` (``serve``) genai-prices is imported here, as without
        the table, and any thread may import it from now on; without (an
        agent), calls only genai-prices could price are unpriced, and why
        is said once. ``timeout_s``: the most the child may take."""
        try:
            self._table = pricetable.build(cache_dir, timeout_s)
            return
        except pricetable.Abandoned:
            return  # shutting down: pricing already stopped waiting
        except Exception as exc:
            if not may_import:
                self._unavailable = f"the price table could not be read ({exc})"
                return
            log.info("genai-prices read in this process (its table's process failed: %s)", exc)
        finally:
            if may_import:
                self._importer = None
            self._settled.set()
        try:
            self._calc_price("gpt-4o", "openai", 1, 0, 0, 1, 0)
        except Exception as exc:  # pricing then says why on its first call
            log.debug("genai-prices warm-up: %s", exc)

    def import_here(self) -> None:
        """Import genai-prices on this thread now (the one that built the
        Pricer), with its lazily imported data: for an agent whose
        interpreter cannot run the table's child process."""
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
                if not self._settled.is_set():  # the table is being read: priced with it
                    self._settled.wait(TABLE_WAIT_S)
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
        except PricesUnavailable as exc:
            if not self._said:
                self._said = True
                log.warning("model calls only genai-prices could price are unpriced in this process: %s", exc)
            return CallCost(None, "unpriced")
        except Exception as exc:  # a pricing bug must never cost the task its events
            log.warning("cannot price a call to %s: %s", model, exc)
            return CallCost(None, "unpriced")

    def _calc_price(
        self, model: str, provider: str | None, t_in: int, read: int, write: int, t_out: int, end_ns: int
    ) -> Any:
        if self._calc is None:
            importer = self._importer
            if importer is not None and importer is not threading.current_thread():
                raise PricesUnavailable(
                    self._unavailable
                    or "genai-prices is not imported on spanvisor's thread while the agent runs, and the price table "
                    "does not hold these prices"
                )
            # Imported on first use: never in an agent's import of spanvisor.
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
_CACHE_KEYS = frozenset(
    {cv.GEN_AI_CACHE_READ, cv.OI_CACHE_READ, cv.GEN_AI_CACHE_WRITE, GEN_AI_CACHE_WRITE_NEW, cv.OI_CACHE_WRITE}
)
_MISSING: Any = object()


__all__ = ["CallCost", "CostSource", "Price", "Pricer"]
