"""genai-prices' models and prices as plain data, built in a short child
process (or read from its cache file) so that ``serve`` never holds the
library.

genai-prices with pydantic and httpx weighs 15-18 MB of RSS, kept for the
process's life once imported (its objects lie spread over pymalloc's arenas
among everyone else's; releasing them gives nothing back). A ``serve``
needs of it only which model a call's name and provider mean and that
model's per-million-token prices at the call's time. So a child process
imports genai-prices, writes its providers and models as JSON
(:mod:`.priceexport`: the match rules, the dated, hourly and tiered prices)
and exits; the receiver reads it back as tuples and strings, and keeps it
in the data dir for the next start (:mod:`.pricecache`). :func:`find`
follows genai-prices' own lookup (``DataSnapshot.find_provider_model``)
step for step, and :mod:`.pricerates` its calculation, without a price
context, as spanvisor calls it. A model whose prices hold what the table
does not carry (a per-request fee beside hourly or tiered prices; none in
genai-prices' data today) answers None and is priced by genai-prices in
process, as before. ``tests/core/test_pricetable.py`` checks every model
genai-prices knows, by its names and providers, against genai-prices itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

from spanvisor.tracking import pricecache
from spanvisor.tracking.flatprices import FlatPrices
from spanvisor.tracking.pricerates import Four, Prices, Schedule, When, as_value, as_when, on_day

# A match rule: ("equals" | "starts_with" | "ends_with" | "contains" |
# "regex", text) or ("or" | "and", (rule, ...)).
Rule = tuple[str, Any]
# A model: its rule, and its prices as :mod:`.pricerates` reads them, or None
# when the table does not carry them.
Model = tuple[Rule, Prices | None]
# A provider: id, its model rule, its provider rule, its fallback providers, its models.
Provider = tuple[str, Rule | None, Rule | None, tuple[str, ...], tuple[Model, ...]]

_COMPACT_DATE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")
_CHILD = "from spanvisor.tracking.priceexport import main; main()"


# Read once per interpreter: the table is immutable, and a process that
# starts several pipelines (the test suite, replicas in one process) would
# otherwise pay the child's second each time.
_BUILT: dict[str, tuple[Provider, ...]] = {}
_FAILED: dict[str, Exception] = {}
_BUILT_LOCK = threading.Lock()
# The child reading the table, while it runs: a process exiting does not
# wait for it (see abandon).
_CHILDREN: set[subprocess.Popen[bytes]] = set()
_CHILDREN_LOCK = threading.Lock()


class Abandoned(Exception):
    """The table's child was stopped: its process is shutting down."""


def build(cache_dir: Path | None = None, timeout_s: float = 120.0) -> tuple[Provider, ...]:
    """The table (once per interpreter): from ``cache_dir``'s cache file
    when it is there for the installed genai-prices, else from a child
    process (and then cached there); raises (with the child's error) when
    genai-prices cannot be imported or read there."""
    with _BUILT_LOCK:
        failed = _FAILED.get(sys.executable)
        if failed is not None:  # a child that failed once fails again: not every pipeline's second
            raise failed
        table = _BUILT.get(sys.executable)
        if table is None:
            try:
                table = _read(cache_dir, timeout_s)
            except Abandoned:
                raise  # not a failure of the child: a later pipeline may read it
            except Exception as exc:
                _FAILED[sys.executable] = exc
                raise
            _BUILT[sys.executable] = table
        return table


def _read(cache_dir: Path | None, timeout_s: float) -> tuple[Provider, ...]:
    key = pricecache.key() if cache_dir is not None else None
    path = None if cache_dir is None else cache_dir / pricecache.FILE_NAME
    if path is not None and key is not None:
        cached = pricecache.read(path, key)
        if cached is not None:
            try:
                return load(cached)
            except Exception as exc:  # a file that matched but does not read: the child's, as without one
                pricecache.log.info("price table cache %s ignored (%s): reading genai-prices' data again", path, exc)
    raw = _from_child(timeout_s)
    data = json.loads(raw)
    table = load(data)
    # kept only when the child read the genai-prices the key names (its
    # path could differ from this process's: it runs without the working directory)
    if path is not None and key is not None and data.get("genai_prices") == key["genai_prices"]:
        pricecache.write(path, key, raw)
    return table


def can_run_child() -> bool:
    """Whether this interpreter can start the table's child: an embedded
    one may have no executable to run."""
    return bool(sys.executable) and os.access(sys.executable, os.X_OK)


def abandon() -> None:
    """Stop any child reading the table now (a pipeline shutting down: an
    agent's exit must not wait for it, nor leave it running)."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        try:
            child.kill()
        except OSError:  # already gone
            pass


def _from_child(timeout_s: float) -> bytes:
    child = subprocess.Popen([sys.executable, "-P", "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with _CHILDREN_LOCK:
        _CHILDREN.add(child)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(child)
    if child.returncode in (-9, -15):
        raise Abandoned("the price table's process was stopped at shutdown")
    if child.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"the price table's process exited {child.returncode}")
    return out


def load(data: dict[str, Any]) -> tuple[Provider, ...]:
    """The table from its JSON (the child's output, or its cache file's);
    ValueError (or the TypeError of a shape unpacked) for data that is no
    table: a price not a finite decimal >= 0, tier starts not ascending
    ints >= 0, a daily interval not within the day, a regex that does not
    compile."""
    strings: dict[str, str] = {}

    def text(s: Any) -> str:
        if not isinstance(s, str):
            raise ValueError(f"not a string: {s!r}")
        return strings.setdefault(s, s)

    def rule(r: Any) -> Rule:
        kind, arg = r
        if kind in ("or", "and"):
            return (text(kind), tuple(rule(x) for x in arg))
        if kind not in ("equals", "starts_with", "ends_with", "contains", "regex"):
            raise ValueError(f"not a match rule: {kind!r}")
        if kind == "regex":
            try:  # compiled now: an invalid one fails the load, not a call's pricing
                re.compile(text(arg))
            except re.error as exc:
                raise ValueError(f"not a regex: {arg!r} ({exc})") from None
        return (text(kind), text(arg))

    def when(w: Any) -> When:
        w = as_when(w)
        return text(w) if isinstance(w, str) else w

    def four(f: Any) -> Four:
        a, b, c, d = (as_value(v) for v in f)
        return (a, b, c, d)

    def model(m: Any) -> Model:
        prices = m[1]
        if prices is None:
            return (rule(m[0]), None)
        return (rule(m[0]), tuple((when(w), four(f)) for w, f in prices))

    return tuple(
        (
            text(pid),
            None if mm is None else rule(mm),
            None if pm is None else rule(pm),
            tuple(text(f) for f in fallback),
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


def lookup(
    table: tuple[Provider, ...], model_ref: str, provider_id: str | None, day: date
) -> FlatPrices | Schedule | None:
    """The model's rates on ``day`` (UTC): :mod:`.flatprices` rates, or a
    :class:`.pricerates.Schedule` when they depend on the call's input
    tokens or time of day; None when the table does not carry its prices
    (genai-prices prices the call). LookupError as genai-prices raises it."""
    _, prices = find(table, model_ref, provider_id)
    return None if prices is None else on_day(prices, day)


__all__ = ["Provider", "build", "can_run_child", "find", "load", "lookup", "matches"]
