"""The ``spanvisor`` command.

Core subcommands live here (``demo``, ``version``; ``check`` in :mod:`spanvisor.cli.check`); ``serve``,
``emit``, ``deadletter`` and the decisions (``approve``, ``reject``,
``cancel``, ``retry``, ``ack``) come from their modules, and plugins add their own (``tasks``,
``migrate``, ...) through the ``spanvisor.commands`` entry-point group.
Every handler has the signature ``handler(args, config) -> exit code``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from spanvisor import __version__
from spanvisor.cli import check
from spanvisor.cli.suggest import Parser
from spanvisor.config import Config, ConfigError
from spanvisor.entrypoints import entry_points
from spanvisor.logs import configure_logging
from spanvisor.sink import SinkLoadError

log = logging.getLogger("spanvisor")
DEMO_METRICS_PORT = 9464


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.cli.demo import run_demo
    from spanvisor.cli.quietpipe import QuietPipe
    from spanvisor.sink import load_sink_class

    # The demo's agents run the in-process pipeline, which leaves out a sink
    # it cannot load: here a misspelt name is the one-line error instead.
    for name in config["sinks"]:
        if name != "auto":
            load_sink_class(name)
    overrides: dict[str, Any] = {}
    names = {s.name for s in config.settings}
    if "embedded_db" in names and config.sources.get("embedded_db") == "default":
        overrides["embedded_db"] = True  # the demo writes its audit trail to the embedded database
    if "metrics_port" in names and config.sources.get("metrics_port") == "default":
        overrides["metrics_port"] = DEMO_METRICS_PORT  # and shows its tasks on /metrics
    if overrides:
        config = config.with_values(**overrides)
    seconds = 3.0 if args.fast else args.seconds
    wait = args.approval_wait if args.approval_wait is not None else (1.0 if args.fast else 20.0)
    real = sys.stdout
    sys.stdout = QuietPipe(real)  # type: ignore[assignment]  # `spanvisor demo | head`: the agents go on
    try:
        return run_demo(config, seconds=seconds, linger_s=args.linger, approval_wait_s=wait, via_serve=args.via_serve)
    finally:
        sys.stdout = real


def cmd_version(args: argparse.Namespace, config: Config) -> int:
    print(f"spanvisor {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spanvisor", description="Supervise AI agents from their OpenTelemetry spans.")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: $SPANVISOR_CONFIG)")
    parser.add_argument("--version", action="version", version=f"spanvisor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run four simulated agents through every configured sink")
    demo.add_argument("--fast", action="store_true", help="finish in about 3 seconds (for tests)")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long the agents run (default 20)")
    demo.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="keep sinks (and /metrics) up S seconds after the agents finish",
    )
    demo.add_argument(
        "--approval-wait",
        type=float,
        default=None,
        metavar="S",
        help="how long rivet waits for `spanvisor approve` (default 20; 1 with --fast)",
    )
    demo.add_argument(
        "--via-serve",
        action="store_true",
        help="the agents export OTLP to spanvisor serve's receiver (as behind a Collector) instead of running the processor",
    )
    demo.set_defaults(func=cmd_demo)

    check.add_arguments(
        sub.add_parser(
            "check",
            help="validate everything spanvisor reads (settings, sinks and what they reach, hook policy, deciders); "
            "the verdict first",
        )
    )
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)

    for module in (
        "spanvisor.receiver.serve",
        "spanvisor.cli.emit",
        "spanvisor.cli.deadletter",
        "spanvisor.cli.decide",
        "spanvisor.cli.login",
        "spanvisor.cli.approvals",
        "spanvisor.cli.grants",
        "spanvisor.cli.policy",
        "spanvisor.cli.follow",
        "spanvisor.cli.run",
        "spanvisor.cli.hook",
        "spanvisor.cli.gate_serve",
    ):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError:
            pass
    for ep in entry_points(group="spanvisor.commands"):
        try:
            ep.load()(sub)
        except Exception as exc:  # one broken plugin must not take the CLI down
            log.warning("commands from plugin %r unavailable: %s", ep.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # `check` reads every value it can and reports each one it cannot; the
    # other commands refuse to start at the first.
    checking = args.func is check.cmd_check
    try:
        config = Config.load(toml_path=args.config, lenient=checking)
    except ConfigError as exc:
        if checking:
            return check.unreadable(str(exc))
        print(f"spanvisor: configuration error: {exc}", file=sys.stderr)
        return 2
    if config.unknown and not checking:
        # A misspelt key would otherwise be ignored while the default applies.
        for problem in config.unknown:
            print(f"spanvisor: configuration error: {problem}", file=sys.stderr)
        return 2
    configure_logging(config["log_format"], config["log_level"])  # the TOML file may set them
    try:
        return int(args.func(args, config))
    except ConfigError as exc:
        print(f"spanvisor: configuration error: {exc}", file=sys.stderr)
        return 2
    except SinkLoadError as exc:
        print(f"spanvisor: configuration error: SPANVISOR_SINKS: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
