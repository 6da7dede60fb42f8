"""``spanvisor assets list | export DIR``: the files that run next to spanvisor.

The wheel carries them as package data: ``spanvisor/_assets`` holds symbolic
links to the repository's ``grafana/``, ``collector-config/``,
``docs/alertmanager-example.yml`` and the Prometheus plugin's ``rules/``, and
the build copies what they point to into the wheel (one copy of each file in
the repository, none made by hand). An installed spanvisor writes them out
ready to mount, with no checkout of the repository:

======================================  ===========================================================
``DIR/grafana/provisioning/``           ``/etc/grafana/provisioning/`` (datasources, dashboard provider)
``DIR/grafana/dashboards/``             ``/var/lib/grafana/dashboards/spanvisor/``
``DIR/collector-config/``               the OpenTelemetry Collector's ``--config``
``DIR/prometheus/rules/``               ``/etc/prometheus/rules/`` (``rule_files``)
``DIR/alertmanager/``                   the Alertmanager example to adapt
======================================  ===========================================================

``DIR/hooks/<cli>/`` holds each coding-agent CLI's settings with the
gate's hook as this installation runs it (its absolute path, ``--locked``,
the operator's policy at ``/etc/spanvisor/hook-policy.toml``), in that
CLI's own format, from its adapter (:meth:`spanvisor.clis.adapter.Adapter.hook_setup`).

``spanvisor assets hook-settings`` prints a CLI's settings holding the
gate's hook as this installation runs it (its absolute path, ``--locked``;
Claude Code's by default: its managed settings, Linux
``/etc/claude-code/managed-settings.json``, with ``"onFailure": "block"``,
the hook on its turn and session events too, and
``allowManagedHooksOnly``).

Registered through the ``spanvisor.commands`` entry point, like a plugin.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanvisor.clis import registry

if TYPE_CHECKING:
    from spanvisor.config import Config


@dataclass(frozen=True, slots=True)
class Asset:
    target: str  # where it goes under DIR
    package: str  # the package that carries it
    source: str  # its path inside that package
    mount: str  # what to do with it


ASSETS: tuple[Asset, ...] = (
    Asset(
        "grafana/provisioning",
        "spanvisor",
        "_assets/grafana/provisioning",
        "mount as /etc/grafana/provisioning (datasources read SPANVISOR_PG_* and SPANVISOR_PROMETHEUS_URL)",
    ),
    Asset(
        "grafana/dashboards",
        "spanvisor",
        "_assets/grafana/dashboards",
        "mount as /var/lib/grafana/dashboards/spanvisor",
    ),
    Asset(
        "collector-config",
        "spanvisor",
        "_assets/collector-config",
        "OpenTelemetry Collector configs; README.md names the distribution and version to run",
    ),
    Asset(
        "prometheus/rules",
        "spanvisor",
        "_assets/prometheus/rules",
        "mount as /etc/prometheus/rules and list spanvisor-rules.yml in rule_files",
    ),
    Asset(
        "alertmanager",
        "spanvisor",
        "_assets/alertmanager",
        "an Alertmanager route and Slack receiver to adapt (amtool check-config)",
    ),
)
# The files a CLI's gate is (its adapter's gate_assets: OpenCode's plugin, Cline's hook files), under DIR/<cli>/.
ASSETS += tuple(
    Asset(adapter.name, *adapter.gate_assets) for adapter in registry.builtin() if adapter.gate_assets is not None
)


def _source(asset: Asset) -> Traversable:
    return resources.files(asset.package).joinpath(*asset.source.split("/"))


def _walk(node: Traversable, rel: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.startswith((".", "__")):
            continue  # __pycache__, editor files
        if child.is_dir():
            yield from _walk(child, (*rel, child.name))
        else:
            yield (*rel, child.name), child


def files() -> Iterator[tuple[str, Traversable]]:
    """Every asset file as (path under DIR, its packaged source)."""
    for asset in ASSETS:
        root = _source(asset)
        if not root.is_dir():
            raise FileNotFoundError(f"{asset.package}/{asset.source} is missing from this installation")
        for rel, node in _walk(root):
            yield "/".join((asset.target, *rel)), node


@dataclass(frozen=True, slots=True)
class ExportResult:
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    conflicts: tuple[Path, ...]  # existing files that differ, left alone without ``force``


def hook_setups() -> Iterator[tuple[str, bytes, str]]:
    """Each CLI's hook settings as (path under DIR, content, where it goes)."""
    from spanvisor.cli import hook_entries

    for adapter in registry.every():
        command = hook_entries.gate_command(adapter.name)
        setup = adapter.hook_setup(command, hook_entries.TIMEOUT_S)
        if setup is not None:
            yield f"hooks/{adapter.name}/{setup.name}", setup.text.encode(), f"{adapter.title}: {setup.where}"


def export(dest: Path, *, force: bool = False) -> ExportResult:
    """Write every asset under ``dest``; an existing file that differs is kept unless ``force``."""
    planned = [(dest.joinpath(*rel.split("/")), node.read_bytes()) for rel, node in files()]
    planned += [(dest.joinpath(*rel.split("/")), data) for rel, data, _ in hook_setups()]
    conflicts = tuple(p for p, data in planned if p.exists() and p.read_bytes() != data)
    if conflicts and not force:
        return ExportResult((), (), conflicts)
    written, unchanged = [], []
    for path, data in planned:
        if path.exists() and path.read_bytes() == data:
            unchanged.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return ExportResult(tuple(written), tuple(unchanged), ())


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "assets", help="the Grafana dashboards, Collector configs, Prometheus rules and Alertmanager example"
    )
    sub = p.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the files and where each goes").set_defaults(func=cmd_list)
    ex = sub.add_parser("export", help="write them under DIR, ready to mount")
    ex.add_argument("dir", metavar="DIR", type=Path, help="target directory (created if missing)")
    ex.add_argument("--force", action="store_true", help="overwrite files that differ from the packaged ones")
    ex.set_defaults(func=cmd_export)
    hs = sub.add_parser(
        "hook-settings",
        help="print a CLI's settings with the gate's hook for this installation (Claude Code's by default: for its "
        "managed settings)",
    )
    hs.add_argument("--cli", default="claude-code", help="which CLI, by its adapter's name (default: claude-code)")
    hs.add_argument("--policy", default=None, help="the hook's policy file (default: /etc/spanvisor/hook-policy.toml)")
    hs.set_defaults(func=cmd_hook_settings)


def cmd_hook_settings(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.cli import hook_entries

    adapter = registry.get(args.cli)
    if adapter is None:
        print(f"spanvisor assets hook-settings: no coding-agent CLI is called {args.cli!r}", file=sys.stderr)
        return 2
    policy = os.path.abspath(args.policy) if args.policy else hook_entries.POLICY_PATH
    setup = adapter.hook_setup(hook_entries.gate_command(adapter.name, policy=policy), hook_entries.TIMEOUT_S)
    if setup is None:
        print(
            f"spanvisor assets hook-settings: {adapter.title}'s gate is a file it loads, not settings "
            "(spanvisor assets export DIR writes it)",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(setup.text)
    return 0


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    try:
        for asset in ASSETS:
            print(f"{asset.target}/: {asset.mount}")
            for rel, _ in files():
                if rel.startswith(asset.target + "/"):
                    print(f"  {rel}")
        print("hooks/: each coding-agent CLI's settings with the gate's hook, in its own format")
        for rel, _, where in hook_setups():
            print(f"  {rel}: {where}")
        sys.stdout.flush()
    except BrokenPipeError:
        # `spanvisor assets list | head`: the reader is gone, which is not an
        # error; stdout goes to /dev/null so the exit-time flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    dest: Path = args.dir
    try:
        result = export(dest, force=args.force)
    except OSError as exc:
        print(f"spanvisor: cannot export the assets to {dest}: {exc}", file=sys.stderr)
        return 1
    if result.conflicts:
        print(
            f"spanvisor: {len(result.conflicts)} file(s) under {dest} differ from the packaged ones:", file=sys.stderr
        )
        for path in result.conflicts:
            print(f"  {path}", file=sys.stderr)
        print("  nothing was written; --force overwrites them", file=sys.stderr)
        return 1
    print(f"wrote {len(result.written)} file(s) to {dest} ({len(result.unchanged)} already current)")
    for asset in ASSETS:
        print(f"  {dest / asset.target}/: {asset.mount}")
    for rel, _, where in hook_setups():
        print(f"  {dest / rel}: {where}")
    return 0
