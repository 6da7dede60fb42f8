"""``spanvisor serve``: an OTLP receiver in front of the same pipeline and sinks.

One process, one pipeline. Agents (or, usually, an OpenTelemetry Collector)
export OTLP here; ``docs/reference/deploy.md`` explains what a 2xx means, how to size
it and how replicas share one PostgreSQL. ``serve`` turns on the embedded
PostgreSQL when no database URL is set. ``/metrics`` on the admin port is the
Prometheus sink's when it runs (``SPANVISOR_SINKS=auto``, the default, runs
it; an explicit list only if it names it), and otherwise the pipeline's
self-metrics alone, with no sink counting events for it. Without the
PostgreSQL sink its state store is the local one (a SQLite file in the data
dir), so a restart never posts a Slack parent twice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.receiver import heap
from spanvisor.receiver.preflight import preflight
from spanvisor.receiver.settings import p_port

log = logging.getLogger("spanvisor.serve")


def port_flag(v: str) -> int | None:
    """A port given on the command line: what ``p_port`` accepts, or argparse's
    one-line usage error."""
    try:
        return p_port(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a port: give 0-65535 (0: any free one) or 'off'") from None


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="receive OTLP traces (HTTP 4318, gRPC 4317) and run the pipeline"
    )
    p.add_argument("--bind", help="override SPANVISOR_OTLP_BIND")
    p.add_argument("--http-port", type=port_flag, help="override SPANVISOR_OTLP_HTTP_PORT")
    p.add_argument("--grpc-port", type=port_flag, help="override SPANVISOR_OTLP_GRPC_PORT")
    p.add_argument("--admin-port", type=port_flag, help="override SPANVISOR_ADMIN_PORT")
    p.set_defaults(func=handler)
    t = subparsers.add_parser(
        "token",
        help="print the token spanvisor serve made at its first start (for an agent's OTEL_EXPORTER_OTLP_HEADERS)",
    )
    t.set_defaults(func=print_token)


def serve_config(config: Config, args: argparse.Namespace | None = None) -> Config:
    """The config ``serve`` runs with: its own settings merged, embedded DB on,
    the console (if it runs) at one line per task, and the local state store for ``auto`` unless a sink brings a shared one
    (see :func:`state_store_choice`)."""
    overrides: dict[str, Any] = {}
    names = {s.name for s in config.settings}
    if config.sources.get("embedded_db", "default") == "default" and "embedded_db" in names:
        overrides["embedded_db"] = True
    # A service's log, not a screen: the console (when it runs) prints a line
    # per task start, end and decision instead of every card.
    if "console_detail" in names and config.get("console_detail") == "auto":
        overrides["console_detail"] = "tasks"
    for flag, name in (
        ("bind", "otlp_bind"),
        ("http_port", "otlp_http_port"),
        ("grpc_port", "otlp_grpc_port"),
        ("admin_port", "admin_port"),
    ):
        value = getattr(args, flag, None) if args is not None else None
        if value is not None:
            overrides[name] = value
    config = config.with_values(**overrides) if overrides else config
    choice = state_store_choice(config)
    return config.with_values(state_store=choice) if choice != config.get("state_store") else config


def state_store_choice(config: Config) -> str:
    """``auto`` stays ``auto`` when a sink that runs registers a shared store
    under its own name (PostgreSQL does; the pipeline then picks it), and is
    otherwise the local store: a process restarted on its data dir must find
    what it posted (the in-memory store forgets it)."""
    from spanvisor.entrypoints import entry_points
    from spanvisor.statestores.api import ENTRY_POINT_GROUP

    choice = str(config.get("state_store") or "auto").lower()
    if choice != "auto":
        return choice
    registered = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return "auto" if registered & set(_sink_names(config)) else "local"


def _sink_names(config: Config) -> list[str]:
    """The sinks ``config`` asks for, by name, without building them."""
    from spanvisor.sink import auto_sink_names

    names = [str(n) for n in config.get("sinks") or ()]
    if names not in ([], ["auto"]):
        return names
    return auto_sink_names(config)


def serve_sinks(config: Config) -> list[Any]:
    """The configured sinks. With ``SPANVISOR_SINKS=auto`` (the default) also
    every installed sink that serves the admin port (``serves_admin``, e.g.
    the Prometheus sink's ``/metrics``); an explicit list runs exactly what it
    names, and the admin port gets :func:`admin_services` instead."""
    from spanvisor.pipeline.assemble import build_sinks as core_build

    sinks = core_build(config)
    if not _auto(config):
        return sinks
    running = {type(s) for s in sinks}
    for name, cls in _admin_classes():
        if cls not in running:
            try:
                sink = cls()
                sink.implicit = True  # not configured: /readyz names it by its role (pipeline.readiness)
                sinks.append(sink)
            except Exception as exc:  # a broken plugin must not stop serve
                log.warning("sink %r for the admin port is unavailable: %s", name, exc)
    return sinks


def admin_services(sinks: Sequence[Any], stats: Any) -> list[Any]:
    """For each installed sink that serves the admin port and does not run:
    its ``admin_service(stats)``, routes that take no events (the Prometheus
    plugin's: the pipeline's self-metrics on ``/metrics``)."""
    running = {type(s) for s in sinks}
    services = []
    for name, cls in _admin_classes():
        make = getattr(cls, "admin_service", None)
        if cls in running or make is None:
            continue
        try:
            services.append(make(stats))
        except Exception as exc:  # a broken plugin must not stop serve
            log.warning("admin routes of sink %r are unavailable: %s", name, exc)
    return services


def _auto(config: Config) -> bool:
    return [str(n) for n in config.get("sinks") or ()] in ([], ["auto"])


def _admin_classes() -> list[tuple[str, type[Any]]]:
    from spanvisor.sink import available_sinks

    return [(name, cls) for name, cls in sorted(available_sinks().items()) if getattr(cls, "serves_admin", False)]


def check_tls(config: Config) -> None:
    from spanvisor.config import ConfigError

    cert, key = config["tls_cert"], config["tls_key"]
    if bool(cert) != bool(key):
        raise ConfigError("tls_cert and tls_key (SPANVISOR_TLS_CERT/KEY) must be set together")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path and not Path(path).is_file():
            raise ConfigError(f"{name} = {path!r} is not a readable file")


def tracker_rebuild(pipeline: Any) -> Any:
    """Spans every sink already had go straight into the (not yet running)
    tracker; their events are dropped, and so are the counts: the process
    that received them counted them."""
    from spanvisor.spans.live import LiveFact
    from spanvisor.stats import PipelineStats

    tracker = pipeline.tracker

    def rebuild(spans: Any) -> None:
        counted, tracker.stats = tracker.stats, PipelineStats()
        try:
            for span in spans:
                try:
                    if isinstance(span, LiveFact):  # a journaled live-channel record
                        tracker.live([span])
                    else:
                        tracker.span_ended(span)
                except Exception:  # the live replay and live spans go on without it
                    log.exception("span journal: a span could not be rebuilt; skipped")
            tracker.settle()  # each entry is a delivered batch: decided as it was
        finally:
            tracker.stats = counted

    return rebuild


def start_rebuilt(pipeline: Any) -> None:
    """Start the pipeline on a tracker the journal rebuilt: its rebuilt tasks
    first leave room for the events of the clock no record holds
    (``TaskTracker.rebuilt``)."""
    rebuilt = pipeline.tracker.rebuilt()
    if rebuilt:
        log.info("span journal: %d open tasks rebuilt", rebuilt)
    pipeline.start()


async def run(config: Config, stop: asyncio.Event | None = None) -> int:
    from spanvisor.pipeline.pipeline import Pipeline
    from spanvisor.receiver.server import Receiver, ReceiverSettings, journal_path

    check_tls(config)
    tuned = heap.tune(config)
    pipeline = Pipeline(config=config, sinks=serve_sinks(config), path="receiver")
    extra = admin_services(pipeline.sinks, pipeline.stats)
    receiver = Receiver(pipeline, ReceiverSettings.from_config(config), admin_extra=extra)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        # The pipeline starts inside, once the journal has rebuilt its tracker.
        await receiver.start(rebuild=tracker_rebuild(pipeline), start_pipeline=lambda: start_rebuilt(pipeline))
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        await receiver.stop(pipeline.shutdown)
        return 1
    except Exception as exc:  # a corrupt journal, bad TLS files, ...
        log.error(
            "spanvisor serve cannot start: %s: %s (journal: %s)",
            type(exc).__name__,
            exc,
            journal_path(config) if config["journal"] else "off",
        )
        await receiver.stop(pipeline.shutdown)
        return 1
    frozen = asyncio.create_task(heap.freeze_at_ready(pipeline.wait_ready)) if tuned else None
    await stop.wait()
    if frozen is not None:
        frozen.cancel()
    log.info("stopping: draining within %.0fs", config["shutdown_timeout_s"])
    await receiver.stop(pipeline.shutdown)
    return 0


def own_token(config: Config) -> Config:
    """``config`` with serve's token: the one configured (SPANVISOR_OTLP_TOKEN),
    none under SPANVISOR_OPEN, else the one serve made at its first start
    (:mod:`spanvisor.gate.servetoken`: made 0600, kept in the data dir, read
    back at every start, never logged). A token file that cannot be trusted
    stops serve with the reason (:class:`ConfigError`)."""
    if config.get("otlp_token"):
        return config
    if config.get("open"):
        log.warning(
            "SPANVISOR_OPEN: serve runs with no token; every local process may send telemetry%s",
            "" if config.get("decide_token") else " and approve, reject and cancel",
        )
        return config
    from spanvisor.config import ConfigError
    from spanvisor.gate import servetoken

    path = servetoken.token_path(config.data_dir)
    try:
        token, made = servetoken.make_or_read(path)
    except servetoken.TokenFileError as exc:
        raise ConfigError(f"{exc} (or set SPANVISOR_OTLP_TOKEN)") from None
    log.info(
        "%s serve's token in %s (mode 0600): this machine's spanvisor commands, hooks and launcher read it; give it "
        "to agents and Collectors elsewhere as SPANVISOR_OTLP_TOKEN (Authorization: Bearer); SPANVISOR_OPEN=1 "
        "runs with none",
        "made" if made else "using",
        path,
    )
    return config.with_values(otlp_token=token)


def print_token(args: argparse.Namespace, config: Config) -> int:
    """``spanvisor token``: the token in this data dir's serve-token, for this
    user's agents on this machine (``Authorization=Bearer $(spanvisor token)``)."""
    from spanvisor.gate import servetoken

    path = servetoken.token_path(config.data_dir)
    try:
        token = servetoken.read(path)
    except servetoken.TokenFileError as exc:
        print(f"spanvisor token: {exc}", file=sys.stderr)
        return 1
    if token is None:
        print(
            f"spanvisor token: no {path}: spanvisor serve makes it at its first start "
            "(unless SPANVISOR_OTLP_TOKEN or SPANVISOR_OPEN is set), with this SPANVISOR_DATA_DIR",
            file=sys.stderr,
        )
        return 1
    print(token)
    return 0


def handler(args: argparse.Namespace, config: Config) -> int:
    config = serve_config(config, args)
    preflight(config)  # a bad people file, another serve on this journal: one line, before anything starts
    config = own_token(config)
    return asyncio.run(run(config))
