"""``spanvisor check``: everything spanvisor will read, validated, the
verdict first.

It reads what ``serve``, an agent's processor and the coding-agent hook read:
every setting (all refused values at once, and names no setting has), the
sinks and their own checks (Slack, Grafana and PostgreSQL are reached), the
hook policy (``SPANVISOR_HOOK_POLICY``), the central policy
(``SPANVISOR_POLICY``), the deciders file
(``SPANVISOR_DECIDERS``), the gate in every CLI's settings and each
CLI's own gate files where it would load them from (its adapter's
``check``) and, when ``SPANVISOR_CONTROL_URL``
is set, the control API there. The first line is the verdict; then only what is wrong
or worth knowing (the settings that are not at their default, warnings,
what each check found). ``--all`` adds the whole table of settings.

Exit status: 0 valid, 1 something could not be reached (or refused the
token), 2 something cannot be read as given (a value, a key, the policy,
the deciders file, a sink name).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from spanvisor.cli.controlurl import control_target
from spanvisor.config import Config
from spanvisor.config.conflicts import conflicts

EXIT_VALID, EXIT_UNREACHABLE, EXIT_INVALID = 0, 1, 2


@dataclass
class Findings:
    invalid: list[str] = field(default_factory=list)  # cannot be read as given: exit 2
    failed: list[str] = field(default_factory=list)  # a check that did not pass: exit 1
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def verdict(self) -> tuple[int, str]:
        if not self.invalid and not self.failed:
            return EXIT_VALID, "configuration is valid"
        parts = []
        if self.invalid:
            parts.append(f"{len(self.invalid)} problem{'s' if len(self.invalid) > 1 else ''}")
        if self.failed:
            parts.append(f"{len(self.failed)} check{'s' if len(self.failed) > 1 else ''} failed")
        return (EXIT_INVALID if self.invalid else EXIT_UNREACHABLE), "configuration is NOT valid: " + ", ".join(parts)


def table(rows: Sequence[Sequence[str]], header: Sequence[str], indent: str = "") -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
        "  ".join("─" * w for w in widths),
    ]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(indent + line for line in lines)


def _settings(config: Config, found: Findings) -> None:
    found.invalid.extend(config.invalid.values())
    found.invalid.extend(config.unknown)
    found.warnings.extend(conflicts(config))


def _sinks(config: Config, found: Findings) -> list[str]:
    from spanvisor.pipeline.assemble import build_sinks

    try:
        sinks = build_sinks(config)
    except Exception as exc:
        found.invalid.append(f"SPANVISOR_SINKS: {exc}")
        return []
    for sink in sinks:
        check = getattr(type(sink), "check", None)
        if check is None:
            continue
        try:
            results = asyncio.run(check(config))
        except Exception as exc:
            results = [(f"{getattr(sink, 'name', '?')} check", False, f"{type(exc).__name__}: {exc}")]
        for what, ok, detail in results:
            (found.checked if ok else found.failed).append(f"{what}: {detail}")
    return [str(getattr(s, "name", "?")) for s in sinks]


def _hook_policy(config: Config, found: Findings) -> None:
    from spanvisor.gate import policy

    path = config.get("hook_policy")
    if not path:
        return
    try:
        got = policy.load(str(path))
    except policy.PolicyError as exc:
        found.invalid.append(
            f"SPANVISOR_HOOK_POLICY ({path}): {exc}; the gate denies every coding-agent tool call until it is fixed"
        )
        return
    found.checked.append(
        f"hook policy {path}: {len(got.rules)} rule{'s' if len(got.rules) != 1 else ''}, "
        f"default {got.default}, {got.timeout_s:g} s to decide, then {got.on_timeout}"
    )


def _central_policy(config: Config, found: Findings) -> None:
    """The central policy (``SPANVISOR_POLICY``): it reads, and every rule
    can decide a call (``spanvisor policy check`` says the same)."""
    from spanvisor.gate import central
    from spanvisor.gate.lint import findings

    path = config.get("policy")
    if not path:
        return
    try:
        got = central.load(str(path))
    except central.PolicyError as exc:
        found.invalid.append(f"SPANVISOR_POLICY ({path}): {exc}; serve does not start with it")
        return
    n = len(got.policy.rules)
    found.checked.append(f"central policy {path}: {got.version}, {n} rule{'s' if n != 1 else ''}")
    for f in findings(got.policy.rules):
        found.warnings.append(
            f"central policy {path}: {'rule ' + repr(f.rule) if f.rule != 'default' else 'default'} {f.message}"
        )


def _deciders(config: Config, found: Findings) -> None:
    from spanvisor.control import deciders

    try:
        got = deciders.from_config(config)
    except deciders.DecidersError as exc:
        found.invalid.append(f"{exc}; decisions are refused until it is fixed")
        return
    if got is not None:
        people = {p.name for p in got.by_hash.values()}
        found.checked.append(
            f"deciders {config.get('deciders_file')}: {len(people)} people, {len(got.agents)} agent token(s)"
        )


def _control_api(config: Config, found: Findings) -> None:
    """The control API ``SPANVISOR_CONTROL_URL`` names, when it is set: what
    agents and the decision commands will reach."""
    if not config.get("control_url"):
        return
    from spanvisor.control.client import HttpSource, token_from_env

    url, source = control_target(None, config)
    token = config.get("decide_token") or config.get("control_token") or token_from_env()
    client = HttpSource(url, token, request_timeout_s=5.0, say=False)
    status, doc = client.approvals(None)
    if status == 200:
        found.checked.append(f"control API {client.url}: reachable, token accepted")
    elif status == 0:
        found.failed.append(
            f"control API {client.url} ({source}): no answer ({doc.get('error') or 'unreachable'}); "
            f"is `spanvisor serve` running there?"
        )
    elif status in (401, 403):
        found.failed.append(
            f"control API {client.url}: HTTP {status}, the token was refused "
            "(SPANVISOR_DECIDE_TOKEN, SPANVISOR_CONTROL_TOKEN or SPANVISOR_OTLP_TOKEN; unset, a loopback URL "
            "gets the local serve's own from <data dir>/serve-token)"
        )
    else:
        found.failed.append(f"control API {client.url}: HTTP {status} {doc.get('error') or ''}".rstrip())


def _cli_gates(found: Findings) -> None:
    """The gate's entries in every CLI's settings (an absolute command,
    ``--locked``, what its adapter adds: Claude Code's ``onFailure``;
    hook_entries.py), and each adapter's own look at a gate of its own
    (OpenCode's plugin, wherever OpenCode would load it from)."""
    import os
    from pathlib import Path

    from spanvisor.cli import hook_entries
    from spanvisor.clis import registry

    warned, ok = hook_entries.installed_findings(os.environ, os.getcwd())
    found.warnings += warned
    found.checked += ok
    for adapter in registry.every():
        bad, warned, ok = adapter.check(os.environ, Path.cwd())
        found.invalid += bad
        found.warnings += warned
        found.checked += ok


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    found = Findings()
    _settings(config, found)
    sinks = _sinks(config, found)
    _hook_policy(config, found)
    _central_policy(config, found)
    _deciders(config, found)
    _control_api(config, found)
    _cli_gates(found)
    code, verdict = found.verdict()
    out = [verdict]
    for title, mark, lines in (
        ("problems", "✗", found.invalid),
        ("failed", "✗", found.failed),
        ("warnings", "!", found.warnings),
    ):
        if lines:
            out += ["", f"{title}:", *(f"  {mark} {line}" for line in lines)]
    out += ["", "sinks: " + (", ".join(sinks) or "none")]
    if found.checked:
        out += ["", "checked:", *(f"  ok {line}" for line in found.checked)]
    rows = config.rows()
    given = [r for r in rows if r[3] != "default"]
    if args.all:
        out += ["", table(rows, ("setting", "environment", "value", "source"))]
    elif given:
        out += ["", f"set ({len(given)} of {len(rows)} settings; --all shows every one):"]
        out.append(table(given, ("setting", "environment", "value", "source"), indent="  "))
    else:
        out += ["", f"every setting at its default (--all shows all {len(rows)})"]
    print("\n".join(out))
    return code


def unreadable(message: str) -> int:
    """The configuration file itself cannot be read: the verdict and why."""
    print(f"configuration is NOT valid: 1 problem\n\nproblems:\n  ✗ {message}")
    return EXIT_INVALID


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="also print every setting, with its value and source")
    p.set_defaults(func=cmd_check)


__all__ = ["EXIT_INVALID", "EXIT_UNREACHABLE", "EXIT_VALID", "add_arguments", "cmd_check", "unreadable"]
