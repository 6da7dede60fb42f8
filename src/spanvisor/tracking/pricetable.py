"""genai-prices' models and flat prices as plain data, built in a short
child process so that ``serve`` never holds the library.

genai-prices with pydantic and httpx weighs 15-18 MB of RSS, kept for the
process's life once imported (its objects lie spread over pymalloc's arenas
among everyone else's; releasing them gives nothing back). A ``serve``
needs of it only which model a call's name and provider mean and that
model's four per-million-token prices on the call's day. So a child process
imports genai-prices, writes its providers and models as JSON (the match
rules, the dated prices) and exits; the receiver reads it back as tuples
and strings. :func:`lookup` follows genai-prices' own lookup
(``DataSnapshot.find_provider_model`` and ``ModelInfo.get_prices``, without
a price context, as spanvisor calls it) step for step; a model whose prices
are not four flat numbers by date (tiered prices, off-peak hours) answers
None and is priced by genai-prices in process, as before.
``tests/core/test_pricetable.py`` checks every model genai-prices knows, by
its names and providers, against genai-prices itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from datetime import date
from decimal import Decimal
from typing import Any

# A match rule: ("equals" | "starts_with" | "ends_with" | "contains" |
# "regex", text) or ("or" | "and", (rule, ...)).
Rule = tuple[str, Any]
# A model: its rule, and its prices newest rule last as genai-prices keeps
# them: (start day or None, the four prices as strings or None), or None when
# they are not flat numbers by date.
Model = tuple[Rule, tuple[tuple[str | None, tuple[str | None, ...]], ...] | None]
# A provider: id, its model rule, its provider rule, its fallback providers, its models.
Provider = tuple[str, Rule | None, Rule | None, tuple[str, ...], tuple[Model, ...]]

PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
_COMPACT_DATE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")


# -- in the child: genai-prices to plain data ------------------------------------


def _rule(clause: Any) -> Rule:
    for kind in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(clause, kind):
            return (kind, getattr(clause, kind))
    if hasattr(clause, "or_"):
        return ("or", [_rule(c) for c in clause.or_])
    if hasattr(clause, "and_"):
        return ("and", [_rule(c) for c in clause.and_])
    raise TypeError(f"unknown genai-prices match clause {type(clause).__name__}")


def _four(price: Any) -> tuple[str | None, ...] | None:
    values = [getattr(price, key, None) for key in PRICE_KEYS]
    if not all(v is None or isinstance(v, Decimal) for v in values):
        return None  # tiered
    return tuple(None if v is None else str(v) for v in values)


def _prices(model: Any) -> list[Any] | None:
    from genai_prices import types

    if isinstance(model.prices, types.ModelPrice):
        four = _four(model.prices)
        return None if four is None else [[None, four]]
    out: list[Any] = []
    for conditional in model.prices:
        constraint, four = conditional.constraint, _four(conditional.prices)
        if four is None or not (constraint is None or isinstance(constraint, types.StartDateConstraint)):
            return None  # tiered, or prices by the hour of the day
        out.append([None if constraint is None else constraint.start_date.isoformat(), four])
    return out or None


def export() -> dict[str, Any]:
    """genai-prices' bundled providers as JSON-able data."""
    from genai_prices import __version__
    from genai_prices.data_snapshot import get_snapshot

    providers = [
        [
            p.id,
            None if p.model_match is None else _rule(p.model_match),
            None if p.provider_match is None else _rule(p.provider_match),
            list(p.fallback_model_providers or ()),
            [[_rule(m.match), _prices(m)] for m in p.models],
        ]
        for p in get_snapshot().providers
    ]
    return {"genai_prices": __version__, "providers": providers}


def main() -> None:
    json.dump(export(), sys.stdout, separators=(",", ":"))


# -- in the receiver: read back, and looked up as genai-prices does --------------


# Read once per interpreter: the table is immutable, and a process that
# starts several pipelines (the test suite, replicas in one process) would
# otherwise pay the child's second each time.
_BUILT: dict[str, tuple[Provider, ...]] = {}
_FAILED: dict[str, Exception] = {}
_BUILT_LOCK = threading.Lock()


def build(timeout_s: float = 120.0) -> tuple[Provider, ...]:
    """The table, from a child process (once per interpreter); raises (with
    the child's error) when genai-prices cannot be imported or read there."""
    with _BUILT_LOCK:
        failed = _FAILED.get(sys.executable)
        if failed is not None:  # a child that failed once fails again: not every pipeline's second
            raise failed
        table = _BUILT.get(sys.executable)
        if table is None:
            try:
                table = _from_child(timeout_s)
            except Exception as exc:
                _FAILED[sys.executable] = exc
                raise
            _BUILT[sys.executable] = table
        return table


def _from_child(timeout_s: float) -> tuple[Provider, ...]:
    done = subprocess.run(
        [sys.executable, "-P", "-c", "from spanvisor.tracking.pricetable import main; main()"],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"the price table's process exited {done.returncode}")
    return load(json.loads(done.stdout))


def load(data: dict[str, Any]) -> tuple[Provider, ...]:
    strings: dict[str, str] = {}

    def text(s: str) -> str:
        return strings.setdefault(s, s)

    def rule(r: Any) -> Rule:
        kind, arg = r
        if kind in ("or", "and"):
            return (text(kind), tuple(rule(x) for x in arg))
        return (text(kind), text(arg))

    def model(m: Any) -> Model:
        prices = m[1]
        if prices is None:
            return (rule(m[0]), None)
        return (rule(m[0]), tuple((day, tuple(None if v is None else text(v) for v in four)) for day, four in prices))

    return tuple(
        (
            text(pid),
            None if mm is None else rule(mm),
            None if pm is None else rule(pm),
            tuple(fallback),
            tuple(model(m) for m in models),
        )
        for pid, mm, pm, fallback, models in data["providers"]
    )


def matches(r: Rule, text: str) -> bool:
    kind, arg = r
    if kind == "equals":
        return bool(text.lower() == arg.lower())
    if kind == "starts_with":
        return text.lower().startswith(arg.lower())
    if kind == "ends_with":
        return text.lower().endswith(arg.lower())
    if kind == "contains":
        return arg.lower() in text.lower()
    if kind == "regex":
        return re.search(arg, text) is not None
    if kind == "or":
        return any(matches(x, text) for x in arg)
    return all(matches(x, text) for x in arg)


def _by_id(table: tuple[Provider, ...], provider_id: str) -> Provider | None:
    wanted = provider_id.lower().strip()
    found = next((p for p in table if p[0] == wanted), None)
    return found or next((p for p in table if p[2] is not None and matches(p[2], wanted)), None)


def _provider(table: tuple[Provider, ...], model_ref: str, provider_id: str | None) -> Provider:
    if provider_id is not None:
        if found := _by_id(table, provider_id):
            return found
        if provider_id.lower() != "litellm":
            raise LookupError(f"Unable to find provider {provider_id=!r}")
    if model_ref:
        for p in table:
            if p[1] is not None and matches(p[1], model_ref):
                return p
    raise LookupError(f"Unable to find provider with model matching {model_ref!r}")


def _match(table: tuple[Provider, ...], p: Provider, model_ref: str, fall_back: bool) -> Model | None:
    for m in p[4]:
        if matches(m[0], model_ref):
            return m
    if fall_back:
        for pid in p[3]:
            other = next((q for q in table if q[0] == pid), None)
            found = None if other is None else _match(table, other, model_ref, False)
            if found is not None:
                return found
    return None


def _normalized(model_ref: str) -> str:
    def replace(match: re.Match[str]) -> str:
        year, month, day = (int(match.group(i)) for i in range(2, 5))
        try:
            date(year, month, day)
        except ValueError:
            return match.group(0)
        return f"{match.group(1)}{year:04d}-{month:02d}-{day:02d}"

    return _COMPACT_DATE.sub(replace, model_ref)


def find(table: tuple[Provider, ...], model_ref: str, provider_id: str | None) -> Model:
    """The model a call's name and provider mean; LookupError as genai-prices raises it."""
    model_ref = model_ref.lower()
    if provider_id and provider_id.lower() == "litellm" and "/" in model_ref:
        actual_provider, actual_ref = model_ref.split("/", 1)
        if actual_provider and _by_id(table, actual_provider):
            provider_id, model_ref = actual_provider, actual_ref
    p = _provider(table, model_ref, provider_id)
    found = _match(table, p, model_ref, True)
    if found is None and (normalized := _normalized(model_ref)) != model_ref:
        found = _match(table, p, normalized, True)
    if found is None:
        raise LookupError(f"Unable to find model with {model_ref=!r} in {p[0]}")
    return found


def lookup(table: tuple[Provider, ...], model_ref: str, provider_id: str | None, day: date) -> Any:
    """The model's prices on ``day`` (UTC) as an object with genai-prices'
    four attributes (Decimals or None), for :func:`.flatprices.flat_prices`;
    None when they are not flat by date (genai-prices prices the call)."""
    _, prices = find(table, model_ref, provider_id)
    if prices is None:
        return None
    chosen = prices[0][1]
    for start, four in reversed(prices):  # the last active price wins
        if start is None or day >= date.fromisoformat(start):
            chosen = four
            break
    per_in, per_out, read, write = (None if v is None else Decimal(v) for v in chosen)
    return _Price(per_in, per_out, read, write)


class _Price:
    """The four prices under genai-prices' names (what flat_prices reads)."""

    def __init__(
        self, per_in: Decimal | None, per_out: Decimal | None, read: Decimal | None, write: Decimal | None
    ) -> None:
        self.input_mtok = per_in
        self.output_mtok = per_out
        self.cache_read_mtok = read
        self.cache_write_mtok = write


__all__ = ["PRICE_KEYS", "Provider", "build", "export", "find", "load", "lookup", "matches"]
