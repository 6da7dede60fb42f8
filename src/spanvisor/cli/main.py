"""The ``spanvisor`` command.

Core subcommands live here (``demo``, ``version``; ``check`` in :mod:`spanvisor.cli.check`); ``serve``,
``emit``, ``deadletter`` and the decisions (``approve``, ``reject``,
``cancel``, ``retry``, ``ack``) come from their modules, and plugins add their own (``tasks``,
``migrate``, ...) through the ``spanvisor.commands`` entry-point group.
Every handler has the signature ``handler(args, config) -> exit code``.

A command imports only the module that registers it (:data:`COMMANDS`):
importing them all cost most of a short command's start (``spanvisor
approve`` or ``version``: about 0.2 s of CPU). A word no core module
registers loads the plugins' commands, and one no plugin registers either
loads everything, so argparse's help and "did you mean" see every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from spanvisor import __version__
from spanvisor.cli.suggest import Parser
from spanvisor.config import Config, ConfigError
from spanvisor.entrypoints import entry_points
from spanvisor.logs import configure_logging

log = logging.getLogger("spanvisor")
DEMO_METRICS_PORT = 9464

# The core modules that register commands, and the commands each registers
# (tests/core/test_cli_commands.py holds each module to its names).
COMMANDS: dict[str, tuple[str, ...]] = {
    "spanvisor.receiver.serve": ("serve", "token"),
    "spanvisor.cli.emit": ("emit",),
    "spanvisor.cli.deadletter": ("deadletter",),
    "spanvisor.cli.decide": ("approve", "reject", "cancel", "retry", "ack", "decider-token"),
    "spanvisor.cli.login": ("login", "logout"),
    "spanvisor.cli.approvals": ("approvals",),
    "spanvisor.cli.grants": ("grants",),
    "spanvisor.cli.policy": ("policy",),
    "spanvisor.cli.follow": ("follow",),
    "spanvisor.cli.run": ("run",),
    "spanvisor.cli.hook": ("hook",),
    "spanvisor.cli.gate_serve": ("gate",),
}
_HERE = ("demo", "check", "version")


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


def command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not a top-level
    option or its value), or None: no command (help, ``--version``)."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            next(words, None)
        elif word == "--":
            return next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every command, or (given ``argv``) with the one it names."""
    word = command_word(argv) if argv is not None else None
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

    core = word is None or word in _HERE or any(word in names for names in COMMANDS.values())
    if core:
        _core(sub, word)
    if word is None or word not in sub.choices:
        for ep in entry_points(group="spanvisor.commands"):
            try:
                ep.load()(sub)
            except Exception as exc:  # one broken plugin must not take the CLI down
                log.warning("commands from plugin %r unavailable: %s", ep.name, exc)
    if not core and word not in sub.choices:
        _core(sub, None)  # nobody registers it: every command, for argparse's "did you mean"
    return parser


def _core(sub: Any, word: str | None) -> None:
    """The core's commands (all of them, or the one ``word`` names)."""
    if word in (None, "check"):
        from spanvisor.cli import check

        check.add_arguments(
            sub.add_parser(
                "check",
                help="validate everything spanvisor reads (settings, sinks and what they reach, hook policy, "
                "deciders); the verdict first",
            )
        )
    sub.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    for module, names in COMMANDS.items():
        if word is None or word in names:
            try:
                importlib.import_module(module).register(sub)
            except ModuleNotFoundError:
                pass


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words)
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # `check` reads every value it can and reports each one it cannot; the
    # other commands refuse to start at the first.
    checking = args.command == "check"
    try:
        config = Config.load(toml_path=args.config, lenient=checking)
    except ConfigError as exc:
        if checking:
            from spanvisor.cli import check

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
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from spanvisor.sink import SinkLoadError

        if not isinstance(exc, SinkLoadError):
            raise
        print(f"spanvisor: configuration error: SPANVISOR_SINKS: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
