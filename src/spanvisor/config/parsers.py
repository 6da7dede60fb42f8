"""Settings and their parsers: each parser takes a str (from the environment)
or a TOML value and returns the typed value, or raises ValueError."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    pass


class Unaccepted(ValueError):
    """A value a parser refuses with a reason a person can act on (``unknown
    placeholder {taskid} (did you mean {task_id}?)``): said after the
    setting's name, so the message must not hold a secret's value."""


Parser = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    env: str
    parse: Parser
    default: Any
    help: str
    accepts: str = ""
    secret: bool = False


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host (and a port, if any, that is a number > 0):
    what a sink that POSTs somewhere can send to."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # e.g. a port that is not a number
        return False


def url_origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: all that logs show of a URL a sink
    POSTs to (its path or query may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{port}"


# --- parsers: each takes a str (from env) or a TOML value ------------------


def p_str(v: Any) -> str:
    return str(v)


def p_opt_str(v: Any) -> str | None:
    s = str(v).strip() if v is not None else ""
    return s or None


def p_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in {"1", "true", "yes", "on"}:
        return True
    if s in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(v)


def p_auto_bool(v: Any) -> str:
    """``auto``, or a yes/no (``true``/``on``... or ``false``/``off``...), as
    ``"auto"``, ``"on"`` or ``"off"``."""
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    return "on" if p_bool(v) else "off"


def p_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(v)
    n = int(str(v).strip().replace("_", ""))
    if n < 0:
        raise ValueError(v)
    return n


def p_pos_int(v: Any) -> int:
    """A count or a size: at least 1 (0 would refuse or drop everything)."""
    n = p_int(v)
    if n < 1:
        raise ValueError(v)
    return n


def p_float(v: Any) -> float:
    f = float(str(v).strip())
    if not math.isfinite(f) or f < 0:
        raise ValueError(v)
    return f


def p_pos_float(v: Any) -> float:
    """A rate: more than 0 (0 would never send)."""
    f = p_float(v)
    if f <= 0:
        raise ValueError(v)
    return f


def p_ratio(v: Any) -> float:
    f = p_float(v)
    if not 0 < f <= 1:
        raise ValueError(v)
    return f


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def p_duration(v: Any) -> float:
    """Seconds, from ``1.5``, ``500ms``, ``30s``, ``15m``, ``2h`` or ``90d``."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return p_float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(v)
    return float(m.group(1)) * _UNITS[m.group(2)]


def p_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple(str(x).strip() for x in v if str(x).strip())
    return tuple(x.strip() for x in str(v).split(",") if x.strip())


def p_provisional(v: Any) -> tuple[str, ...]:
    """``off``, or the signals that make a trace look like an agent run:
    ``agent``, ``tool``, ``calls=N`` (tracking/provisional.py)."""
    items = tuple(x.lower() for x in p_list(v))
    if items in ((), ("off",), ("false",), ("none",)):
        return ("off",)
    for item in items:
        name, eq, value = item.partition("=")
        ok = (name in ("agent", "tool") and not eq) or (
            name == "calls" and (not eq or (value.isdigit() and int(value) > 0))
        )
        if not ok:
            raise ValueError(f"{item!r}: expected off, or agent, tool, calls=N separated by commas")
    return items


def p_ratios(v: Any) -> tuple[float, ...]:
    return tuple(sorted({p_ratio(x) for x in p_list(v)}))


def p_percents(v: Any) -> tuple[float, ...]:
    vals = sorted({p_float(x) for x in p_list(v)})
    if any(x > 100 for x in vals):
        raise ValueError(v)
    return tuple(vals)


def p_int_map(v: Any) -> dict[str, int]:
    """``model=tokens,...`` (env) or a TOML table."""
    if isinstance(v, Mapping):
        return {str(k): p_int(x) for k, x in v.items()}
    out: dict[str, int] = {}
    for item in p_list(v):
        key, sep, num = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(item)
        out[key.strip()] = p_int(num)
    return out


def p_opt_float(v: Any) -> float | None:
    s = str(v).strip() if v is not None else ""
    return p_float(s) if s else None


def p_levels(v: Any) -> tuple[float, ...]:
    """Shares of a budget, e.g. ``0.8,1.0`` (above 0, at most 10)."""
    vals = tuple(sorted({p_float(x) for x in p_list(v)}))
    if not vals or any(not 0 < x <= 10 for x in vals):
        raise ValueError(v)
    return vals


def p_agents_or_bool(v: Any) -> tuple[str, ...]:
    """``true`` (every agent: ``("*",)``), ``false`` (none), or a list of agent ids (``*``: every agent)."""
    if isinstance(v, bool) or (isinstance(v, str) and v.strip().lower() in _YES_NO):
        return ("*",) if p_bool(v) else ()
    return tuple(sorted(set(p_list(v))))


_YES_NO = frozenset({"1", "true", "yes", "on", "0", "false", "no", "off", ""})


def p_float_map(v: Any) -> dict[str, float]:
    """``agent=dollars,...`` (env; ``*`` for every agent) or a TOML table."""
    if isinstance(v, Mapping):
        return {str(k): p_float(x) for k, x in v.items()}
    out: dict[str, float] = {}
    for item in p_list(v):
        key, sep, num = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(item)
        out[key.strip()] = p_float(num)
    return out


def p_prices(v: Any) -> dict[str, tuple[float, float, float | None]]:
    """Dollars per million tokens by model prefix: ``model=input:output[:cached
    input],...`` (env) or a TOML table ``model = {input = 3, output = 15,
    cache_read = 0.3}``."""
    out: dict[str, tuple[float, float, float | None]] = {}
    if isinstance(v, Mapping):
        for model, price in v.items():
            if not isinstance(price, Mapping):
                raise ValueError(model)
            cached = price.get("cache_read")
            out[str(model)] = (
                p_float(price["input"]),
                p_float(price["output"]),
                None if cached is None else p_float(cached),
            )
        return out
    for item in p_list(v):
        model, sep, rest = item.partition("=")
        parts = rest.split(":")
        if not sep or not model.strip() or len(parts) not in (2, 3):
            raise ValueError(item)
        out[model.strip()] = (p_float(parts[0]), p_float(parts[1]), p_float(parts[2]) if len(parts) == 3 else None)
    return out


def p_choice(*choices: str) -> Parser:
    def parse(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in choices:
            raise ValueError(v)
        return s

    return parse


def p_size(v: Any) -> int:
    """Bytes, from ``16777216``, ``64KiB``, ``16MiB``, ``2GiB`` (binary) or
    ``64KB``, ``16MB``, ``2GB`` (decimal, as disk makers count)."""
    s = str(v).strip()
    units = (("KiB", 1024), ("MiB", 1024**2), ("GiB", 1024**3), ("KB", 1000), ("MB", 1000**2), ("GB", 1000**3))
    for suffix, mult in units:
        if s.endswith(suffix):
            number = float(s[: -len(suffix)])
            if not math.isfinite(number) or number * mult < 1:
                raise ValueError(v)
            return int(number * mult)
    n = p_int(s)
    if n < 1:
        raise ValueError(v)
    return n
