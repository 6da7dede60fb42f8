"""Loading the effective configuration: the core table plus every installed
part's, from the environment, then the TOML file, then the defaults."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spanvisor.config.costs import COST_SETTINGS
from spanvisor.config.parsers import ConfigError, Setting, Unaccepted
from spanvisor.config.table import CORE_SETTINGS, default_data_dir
from spanvisor.entrypoints import entry_points


def _check(settings: Sequence[Setting]) -> None:
    seen: set[str] = set()
    for s in settings:
        if s.name in seen:
            raise ConfigError(f"setting {s.name!r} is declared twice")
        seen.add(s.name)


class Config:
    """Effective configuration: ``config["name"]`` or ``config.get("name")``."""

    def __init__(
        self,
        values: Mapping[str, Any],
        settings: Sequence[Setting],
        sources: Mapping[str, str],
        unknown: Sequence[str] = (),
        invalid: Mapping[str, str] | None = None,
        owners: Mapping[str, str] | None = None,
    ) -> None:
        self._values = dict(values)
        self.settings = tuple(settings)
        self.sources = dict(sources)
        # Keys of the TOML file and SPANVISOR_* variables no setting reads,
        # each with a "did you mean" (see :func:`unknown_keys`).
        self.unknown = tuple(unknown)
        # Loaded leniently (an agent's process, `spanvisor check`): each
        # setting whose value was refused, with the one line saying why; the
        # setting holds its default meanwhile, and whoever reads the config
        # decides what runs without it (see spanvisor.pipeline.agentconfig).
        self.invalid = dict(invalid or {})
        # Which part declares each setting that is not the core's:
        # "sink:<name>" for a sink's, else the entry point's name ("receiver").
        self.owners = dict(owners or {})

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def with_values(self, **overrides: Any) -> Config:
        values = dict(self._values)
        values.update(overrides)
        sources = {**self.sources, **{k: "code" for k in overrides}}
        invalid = {k: v for k, v in self.invalid.items() if k not in overrides}
        return Config(values, self.settings, sources, self.unknown, invalid, self.owners)

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
        *,
        lenient: bool = False,
    ) -> Config:
        """The effective configuration. A value a setting refuses raises one
        :class:`ConfigError` naming the setting, the value and what it
        accepts; with ``lenient`` every such value is collected instead
        (:attr:`invalid`) and the setting keeps its default. A file that
        cannot be read raises either way."""
        env = os.environ if env is None else env
        settings = [*CORE_SETTINGS, *COST_SETTINGS]
        extra_given = extra
        owners: dict[str, str] = {}
        if extra is None:
            extra = []
            for owner, part in plugin_settings_by_owner():
                extra.extend(part)
                owners.update((s.name, owner) for s in part)
        settings.extend(extra)
        _check(settings)
        path = toml_path or env.get("SPANVISOR_CONFIG")
        table: dict[str, Any] = {}
        if path:
            doc = read_toml(path, "SPANVISOR_CONFIG")
            table = dict(doc.get("spanvisor", doc))
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        invalid: dict[str, str] = {}
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
            except (ValueError, TypeError) as exc:
                shown = "<secret>" if s.secret else repr(raw)
                accepts = f"; accepted: {s.accepts}" if s.accepts else ""
                why = f": {exc}" if isinstance(exc, Unaccepted) and not s.secret else ""
                problem = f"{s.name} ({source}) = {shown} is invalid{why}{accepts}"
                if not lenient:
                    raise ConfigError(problem) from None
                invalid[s.name] = problem
                values[s.name], sources[s.name] = s.default, "default"
                continue
            sources[s.name] = source
        # Only the whole table can say what is unknown (a partial ``extra`` is a test's).
        unknown = unknown_keys(settings, env, table, str(path)) if extra_given is None else []
        return cls(values, settings, sources, unknown, invalid, owners)

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


def read_toml(path: str | os.PathLike[str], setting: str) -> dict[str, Any]:
    """A TOML file a setting names; :class:`ConfigError`, one line naming
    the setting, when it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{setting}: {path} is not valid TOML: {exc}") from None


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


PLUGIN_SETTINGS_GROUP = "spanvisor.settings"
SINKS_GROUP = "spanvisor.sinks"
# A sink's settings table under the sink's own name, read instead of
# importing the sink's class: every command loads the configuration, and
# importing every sink cost about a third of a short command's start.
SINK_SETTINGS_GROUP = "spanvisor.sink_settings"


def plugin_settings() -> list[Setting]:
    """Every installed part's settings, found through entry points so that the
    configuration imports no other part of spanvisor: the tables registered in
    ``spanvisor.settings`` (the receiver's), and each sink's: the table its
    ``spanvisor.sink_settings`` entry point of the same name names, or else
    its class's ``settings`` (``spanvisor.sinks``). A part that fails to load
    is skipped: its own loading reports why."""
    return [s for _, part in plugin_settings_by_owner() for s in part]


def plugin_settings_by_owner() -> list[tuple[str, list[Setting]]]:
    """:func:`plugin_settings` by the part declaring them: a
    ``spanvisor.settings`` entry point's name, or ``sink:<name>``."""
    out: list[tuple[str, list[Setting]]] = []
    for ep in entry_points(group=PLUGIN_SETTINGS_GROUP):
        try:
            out.append((ep.name, list(ep.load())))
        except Exception:  # a broken plugin must not break the others
            continue
    tables = {ep.name: ep for ep in entry_points(group=SINK_SETTINGS_GROUP)}
    for ep in entry_points(group=SINKS_GROUP):
        try:
            table = tables[ep.name].load() if ep.name in tables else getattr(ep.load(), "settings", ())
            out.append((f"sink:{ep.name}", list(table or ())))
        except Exception:
            continue
    return out


# SPANVISOR_* variables read outside the settings table.
OTHER_VARIABLES = frozenset({"SPANVISOR_CONFIG", "SPANVISOR_LIVE"})


def unknown_keys(settings: Sequence[Setting], env: Mapping[str, str], table: Mapping[str, Any], path: str) -> list[str]:
    """What no setting reads: a TOML key or a ``SPANVISOR_*`` variable, each
    with the closest known name (``poll_interval`` → ``poll_interval_s``)."""
    names = [s.name for s in settings]
    variables = [s.env for s in settings]
    out = []
    for key in table:
        if key not in names:
            out.append(f"unknown key {key!r} in {path}{_did_you_mean(key, names)}")
    for var in env:
        if var.startswith("SPANVISOR_") and var not in variables and var not in OTHER_VARIABLES:
            out.append(f"unknown variable {var}{_did_you_mean(var, variables)}")
    return out


def _did_you_mean(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.startswith(word) or word.startswith(k)][:1]
    return f"; did you mean {close[0]!r}?" if close else ""
