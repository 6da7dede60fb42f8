"""Configuration: one declarative table, read from the environment and TOML.

Each :class:`Setting` names its environment variable, its TOML key, its type
and its default. Sinks add their own settings through their ``settings``
class attribute, so ``spanvisor check`` shows everything in one table.
Precedence: environment, then the TOML file (``SPANVISOR_CONFIG``), then the
default. A bad value raises one :class:`ConfigError` naming the setting and
what it accepts.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


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


def p_choice(*choices: str) -> Parser:
    def parse(v: Any) -> str:
        s = str(v).strip().lower()
        if s not in choices:
            raise ValueError(v)
        return s

    return parse


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "spanvisor")


# --- the core table -------------------------------------------------------

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "sinks",
        "SPANVISOR_SINKS",
        p_list,
        ("auto",),
        "Sinks to run, by entry-point name. 'auto' runs every installed sink whose own settings enable it, and the console when no Slack token is set.",
        "comma-separated names, or auto",
    ),
    Setting(
        "data_dir",
        "SPANVISOR_DATA_DIR",
        p_str,
        None,
        "Where the embedded database and the outbox live. Default: $XDG_DATA_HOME/spanvisor.",
        "a directory path",
    ),
    Setting(
        "log_format",
        "SPANVISOR_LOG_FORMAT",
        p_choice("human", "json"),
        "human",
        "Log line format.",
        "human or json",
    ),
    Setting(
        "log_level",
        "SPANVISOR_LOG_LEVEL",
        p_choice("debug", "info", "warning", "error"),
        "info",
        "Log level.",
        "debug, info, warning or error",
    ),
    Setting(
        "context_thresholds",
        "SPANVISOR_CONTEXT_THRESHOLDS",
        p_ratios,
        (0.70, 0.85),
        "Context-window ratios that raise a warning; the highest is critical.",
        "ratios in (0, 1], e.g. 0.7,0.85",
    ),
    Setting(
        "model_context_windows",
        "SPANVISOR_MODEL_CONTEXT_WINDOWS",
        p_int_map,
        {},
        "Overrides and additions to the built-in table of model context windows.",
        "model=tokens,... (prefix match on the model name)",
    ),
    Setting(
        "poll_interval_s",
        "SPANVISOR_POLL_INTERVAL",
        p_duration,
        1.0,
        "How often open task spans are read for live progress (in-process only).",
        "a duration, e.g. 1s",
    ),
    Setting(
        "replica_id",
        "SPANVISOR_REPLICA_ID",
        p_opt_str,
        None,
        "Who this process is to the shared state store. Default: host and data directory for `serve`, host and pid "
        "in-process. Give each replica its own; keep it across restarts.",
        "a short name",
    ),
    Setting(
        "stamp_spans",
        "SPANVISOR_STAMP_SPANS",
        p_bool,
        True,
        "Stamp agent.task.id, agent.task.root_span_id and agent.id on every span of a task (in-process), so spans "
        "exported to a Collector can be grouped; off saves the agent a few microseconds per span.",
        "true or false",
    ),
    Setting(
        "root_hold_s",
        "SPANVISOR_ROOT_HOLD",
        p_duration,
        30.0,
        "Spans that end before their ancestors (exporter and receiver paths) wait at most this long for them.",
        "a duration",
    ),
    Setting(
        "max_open_tasks",
        "SPANVISOR_MAX_OPEN_TASKS",
        p_pos_int,
        10_000,
        "Open tasks tracked at once; beyond it the oldest is evicted and counted.",
        "a positive integer",
    ),
    Setting(
        "dedup_window",
        "SPANVISOR_DEDUP_WINDOW",
        p_pos_int,
        200_000,
        "How many recently seen span ends are remembered so a resent span is not counted twice.",
        "a positive integer",
    ),
    Setting(
        "inbox_size",
        "SPANVISOR_INBOX_SIZE",
        p_pos_int,
        100_000,
        "Entries waiting for the tracker (a span start or end in-process, one batch from the receiver); beyond it new ones are dropped and counted (the receiver answers 503 instead).",
        "a positive integer",
    ),
    Setting(
        "queue_size",
        "SPANVISOR_QUEUE_SIZE",
        p_pos_int,
        10_000,
        "Events waiting per sink; beyond it events for that sink are dropped and counted.",
        "a positive integer",
    ),
    Setting(
        "batch_size",
        "SPANVISOR_BATCH_SIZE",
        p_pos_int,
        512,
        "Most events handed to a sink in one export call.",
        "a positive integer",
    ),
    Setting(
        "batch_delay_s",
        "SPANVISOR_BATCH_DELAY",
        p_duration,
        0.1,
        "Longest a sink's batch waits to fill.",
        "a duration",
    ),
    Setting(
        "state_store",
        "SPANVISOR_STATE_STORE",
        p_str,
        "auto",
        "Shared state store: memory, an entry-point name (postgres), or auto (postgres when the postgres sink runs).",
        "auto, memory or postgres",
    ),
)


def _check(settings: Sequence[Setting]) -> None:
    seen: set[str] = set()
    for s in settings:
        if s.name in seen:
            raise ConfigError(f"setting {s.name!r} is declared twice")
        seen.add(s.name)


class Config:
    """Effective configuration: ``config["name"]`` or ``config.get("name")``."""

    def __init__(self, values: Mapping[str, Any], settings: Sequence[Setting], sources: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.settings = tuple(settings)
        self.sources = dict(sources)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def with_values(self, **overrides: Any) -> Config:
        values = dict(self._values)
        values.update(overrides)
        return Config(values, self.settings, {**self.sources, **{k: "code" for k in overrides}})

    @property
    def data_dir(self) -> Path:
        return Path(self._values.get("data_dir") or default_data_dir())

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        toml_path: str | os.PathLike[str] | None = None,
        extra: Iterable[Setting] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        env = os.environ if env is None else env
        settings = list(CORE_SETTINGS)
        if extra is None:
            extra = plugin_settings()
        settings.extend(extra)
        _check(settings)
        path = toml_path or env.get("SPANVISOR_CONFIG")
        table: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as f:
                    doc = tomllib.load(f)
            except OSError as exc:
                raise ConfigError(f"SPANVISOR_CONFIG: cannot read {path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"SPANVISOR_CONFIG: {path} is not valid TOML: {exc}") from None
            table = dict(doc.get("spanvisor", doc))
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for s in settings:
            if overrides and s.name in overrides:
                values[s.name], sources[s.name] = overrides[s.name], "code"
                continue
            raw: Any
            if s.env in env and env[s.env] != "":
                raw, source = env[s.env], f"env {s.env}"
            elif s.name in table:
                raw, source = table[s.name], f"file {path}"
            else:
                values[s.name], sources[s.name] = s.default, "default"
                continue
            try:
                values[s.name] = s.parse(raw)
            except (ValueError, TypeError):
                shown = "<secret>" if s.secret else repr(raw)
                accepts = f"; accepted: {s.accepts}" if s.accepts else ""
                raise ConfigError(f"{s.name} ({source}) = {shown} is invalid{accepts}") from None
            sources[s.name] = source
        return cls(values, settings, sources)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(setting, env, value, source) with secrets masked, for display."""
        out = []
        for s in self.settings:
            v = self._values.get(s.name)
            out.append(
                (
                    s.name,
                    s.env,
                    mask(v) if s.secret else _show(v),
                    self.sources.get(s.name, "default"),
                )
            )
        return out


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, tuple | list):
        return ",".join(str(x) for x in v) or "-"
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items()) or "-"
    return str(v)


_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pass|token|secret|sslpassword)=)[^&#]*")


def mask(v: Any) -> str:
    """Show that a secret is set without showing it. URLs keep all but the
    password (which may itself contain "@" or ":") and secret query values."""
    if v is None or v == "":
        return "-"
    s = str(v)
    if "://" in s:
        scheme, _, rest = s.partition("://")
        userinfo, at, hostpart = rest.rpartition("@")
        if at and ":" in userinfo:
            rest = userinfo.split(":", 1)[0] + ":****@" + hostpart
        return _QUERY_SECRET.sub(r"\1****", f"{scheme}://{rest}")
    return f"**** ({len(s)} chars)"


def plugin_settings() -> list[Setting]:
    from spanvisor.serve import SETTINGS as SERVE_SETTINGS
    from spanvisor.sink import available_sinks

    out: list[Setting] = list(SERVE_SETTINGS)
    for cls in available_sinks().values():
        out.extend(getattr(cls, "settings", ()) or ())
    return out
