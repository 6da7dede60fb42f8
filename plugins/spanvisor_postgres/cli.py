"""``spanvisor migrate | db url | db stop | tasks | task | interventions | stats | prune``.

Registered through the ``spanvisor.commands`` entry point. Without
``SPANVISOR_DATABASE_URL`` the commands read the embedded database (started
for the command when it is not running, and stopped again after) when one
exists in the data directory or ``SPANVISOR_EMBEDDED_DB`` is on; otherwise
they say that no database is configured (exit 3) instead of creating an
empty one. Tables fit the terminal; a closed pipe ends them quietly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from spanvisor.config import ConfigError, mask, p_duration
from spanvisor.display.readable import usd

from .clirun import guard
from .humancli import printable, show_extras, show_results, task_extras
from .humancli import register as register_interventions
from .output import print_json, say, terminal_width
from .output import table as render_table
from .queries import STATUS_FILTERS, cost_text
from .signcli import register as register_signing

if TYPE_CHECKING:
    from spanvisor.config import Config


def _duration_arg(v: str) -> float:
    try:
        return p_duration(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a duration (e.g. 30m, 1h, 7d)") from None


def _head_arg(v: str) -> Any:
    from .auditchain import parse_head

    try:
        return parse_head(v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("migrate", help="apply the audit schema's pending migrations")
    p.set_defaults(func=cmd_migrate)

    db = subparsers.add_parser("db", help="the database: 'db url' prints its URL, 'db stop' stops the embedded one")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    url = db_sub.add_parser("url", help="print the connection URL (starts the embedded server if needed)")
    url.add_argument("--reveal", action="store_true", help="show the password of an external URL")
    url.set_defaults(func=cmd_db_url)
    db_sub.add_parser("stop", help="stop the embedded server").set_defaults(func=cmd_db_stop)

    tasks = subparsers.add_parser("tasks", help="recent tasks, most recent first")
    tasks.add_argument("--status", choices=STATUS_FILTERS, metavar="STATUS", help=f"one of {', '.join(STATUS_FILTERS)}")
    tasks.add_argument("--agent", help="only this agent id")
    tasks.add_argument("--since", type=_duration_arg, metavar="DURATION", help="started within, e.g. 1h")
    tasks.add_argument("--limit", type=int, default=50, help="most rows (default 50)")
    tasks.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    tasks.set_defaults(func=cmd_tasks)

    task = subparsers.add_parser("task", help="one task's full timeline")
    task.add_argument("task_id", help="the task id or a unique prefix of it")
    task.add_argument("--json", action="store_true")
    task.set_defaults(func=cmd_task)

    register_interventions(subparsers)

    stats = subparsers.add_parser("stats", help="per agent: tasks, success rate, p50/p95 duration, tokens")
    stats.add_argument(
        "--since", type=_duration_arg, default=7 * 86400.0, metavar="DURATION", help="started within (default 7d)"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    prune = subparsers.add_parser("prune", help="delete tasks inactive for longer than a duration")
    prune.add_argument("--older-than", type=_duration_arg, required=True, metavar="DURATION", help="e.g. 90d")
    prune.add_argument("--batch", type=int, default=500, help="tasks per transaction (default 500)")
    prune.set_defaults(func=cmd_prune)

    audit = subparsers.add_parser(
        "audit", help="the decision log: 'audit verify' checks its hash chain and signatures, 'audit export' writes it"
    )
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser(
        "verify", help="recompute the decision log's hash chain; names the first row changed, deleted or reordered"
    )
    verify.add_argument(
        "--head",
        type=_head_arg,
        metavar="SEQ:HASH",
        help="a head kept outside the database (the log line, the webhook): the chain must still pass through it",
    )
    verify.set_defaults(func=cmd_audit_verify)
    register_signing(audit_sub, verify)


# --- plumbing -------------------------------------------------------------------


def _when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def short_ids(ids: Sequence[str], least: int = 12) -> list[str]:
    """Each id as the shortest start of it, at least ``least`` characters,
    that no other listed id begins with: ``claude-code-3f2a`` for a
    launcher's task, never ``claude-code-`` for all of them. What is shown
    pastes into ``spanvisor task`` (a unique prefix names the task)."""
    out = []
    for i, task_id in enumerate(ids):
        others = [o for j, o in enumerate(ids) if j != i and o != task_id]
        n = min(least, len(task_id))
        while n < len(task_id) and any(o.startswith(task_id[:n]) for o in others):
            n += 1
        out.append(task_id[:n])
    return out


def _short(s: str | None, n: int) -> str:
    # Agent text: no terminal control characters, one line.
    return printable(s or "", n)


def _table(rows: Sequence[Sequence[str]], header: tuple[str, ...], right: tuple[int, ...]) -> str:
    """The table, without its COST column when no row has a cost (spans without
    token usage, or written before costs were kept): a column of dashes only
    takes width from the others."""
    col = header.index("COST")
    if all(r[col] == "-" for r in rows):
        rows = [[*r[:col], *r[col + 1 :]] for r in rows]
        header = header[:col] + header[col + 1 :]
        right = tuple(i - (i > col) for i in right if i != col)
    return render_table(rows, header, right=right, width=terminal_width())


def _task_cost(task: dict[str, Any]) -> str:
    text = cost_text(task["cost_usd"], task["unpriced_calls"])
    return "-" if text == "-" else f"{text} (estimate)"


def _budget_text(task: dict[str, Any]) -> str | None:
    """The task's own budgets and how much of each is used, or None."""
    parts = []
    if task["budget_usd"]:
        parts.append(f"{usd(task['budget_usd'])} ({(task['cost_usd'] or 0) / task['budget_usd']:.0%} used)")
    if task["budget_tokens"]:
        used = (task["input_tokens"] or 0) + (task["output_tokens"] or 0)
        parts.append(f"{task['budget_tokens']:,} tokens ({used / task['budget_tokens']:.0%} used)")
    return " · ".join(parts) or None


# --- commands -------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, config: Config) -> int:
    from .migrate import migrate

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
        # A connection of its own: migrate ends the one it used should
        # releasing its lock fail.
        async with pool.acquire() as conn:
            version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        say(f"applied {', '.join(applied)}" if applied else f"schema is current (version {version})")
        return 0

    return guard(config, go, auto_migrate=False)


def cmd_db_url(args: argparse.Namespace, config: Config) -> int:
    from .db import embedded_root
    from .embedded import EmbeddedPostgres, EmbeddedUnavailable

    url = config.get("database_url")
    if url:
        print(url if args.reveal else mask(url))
        return 0
    try:
        print(EmbeddedPostgres(embedded_root(config)).ensure_running())
    except EmbeddedUnavailable as exc:
        print(f"spanvisor: {exc}", file=sys.stderr)
        return 3
    print("(the embedded server keeps running; 'spanvisor db stop' stops it)", file=sys.stderr)
    return 0


def cmd_db_stop(args: argparse.Namespace, config: Config) -> int:
    from .db import embedded_root
    from .embedded import EmbeddedPostgres

    if config.get("database_url"):
        raise ConfigError("SPANVISOR_DATABASE_URL is set: spanvisor does not stop an external database")
    EmbeddedPostgres(embedded_root(config)).stop()
    print("embedded PostgreSQL stopped")
    return 0


def cmd_tasks(args: argparse.Namespace, config: Config) -> int:
    from .queries import list_tasks

    async def go(pool: Any) -> int:
        rows = await list_tasks(pool, args.status, args.agent, args.since, args.limit)
        if args.json:
            for r in rows:
                print_json(r)
            return 0
        if not rows:
            say("no tasks match")
            return 0
        now = datetime.now().astimezone()
        shown = short_ids([r["task_id"] for r in rows])
        table = [
            (
                printable(shown[i], 80),
                _short(r["agent_id"], 16),
                r["status"],
                "-" if r["progress"] is None else f"{r['progress']:.0f}%",
                _when(r["started_at"]),
                _dur(r["duration_s"] if r["ended_at"] else (now - r["started_at"]).total_seconds()),
                f"{r['input_tokens']:,}/{r['output_tokens']:,}",
                cost_text(r["cost_usd"], r["unpriced_calls"]),
                _short(r["task_name"], 32),
                _short(r["error_message"] or r["message"], 48),
            )
            for i, r in enumerate(rows)
        ]
        header = ("TASK", "AGENT", "STATUS", "PROGRESS", "STARTED", "DURATION", "TOKENS IN/OUT", "COST", "NAME")
        say(_table(table, (*header, "LAST MESSAGE"), right=(3, 5, 6, 7)))
        return 0

    return guard(config, go)


def cmd_task(args: argparse.Namespace, config: Config) -> int:
    from .queries import TaskNotFound, find_task
    from .timeline import timeline

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            try:
                task = await find_task(conn, args.task_id)
            except TaskNotFound:
                # Decisions on a task this database has no row for still show.
                extras = await task_extras(conn, args.task_id)
                if not extras["interventions"]:
                    raise
                if args.json:
                    print_json({"task": None, "timeline": [], **extras})
                else:
                    say(f"no task row for {printable(args.task_id, 200)}; its interventions:")
                    show_extras(extras)
                return 0
            entries = await timeline(conn, task)
            extras = await task_extras(conn, task["task_id"], task.get("former_id"))
        if args.json:
            print_json({"task": task, "timeline": entries, **extras})
            return 0
        ctx = "-"
        if task["context_tokens"] is not None:
            limit = task["context_limit"]
            ratio = f" ({task['context_tokens'] / limit:.0%})" if limit else ""
            ctx = f"{task['context_tokens']:,} / {limit:,}{ratio}" if limit else f"{task['context_tokens']:,}"
        head = [
            ("task", task["task_id"]),
            *([("former id", task["former_id"])] if task.get("former_id") else []),
            ("name", task["task_name"] or "-"),
            ("agent", f"{task['agent_id']}" + (f" ({task['agent_name']})" if task["agent_name"] else "")),
            ("repo", task["repo"] or "-"),
            *([("branch", task["branch"])] if task.get("branch") else []),
            *([("pull request", task["pull_request"])] if task.get("pull_request") else []),
            ("status", task["status"]),
            ("progress", "-" if task["progress"] is None else f"{task['progress']:.0f}%"),
            ("started", _when(task["started_at"])),
            ("ended", _when(task["ended_at"])),
            ("duration", _dur(task["duration_s"])),
            ("model", task["model"] or "-"),
            ("context", ctx),
            ("tokens", f"{task['input_tokens']:,} in / {task['output_tokens']:,} out"),
            ("cost", _task_cost(task)),
            *([("budget", budget)] if (budget := _budget_text(task)) else []),
            ("trace", task["trace_id"]),
        ]
        if task["error_type"] or task["error_message"]:
            head.append(("error", f"{task['error_type'] or ''} {task['error_message'] or ''}".strip()))
        if task["notes"]:
            head.append(("notes", "; ".join(task["notes"])))
        for k, v in head:
            say(f"{k:>9}  {printable(v)}")
        show_results(task.get("results"))
        say("")
        table = [
            (
                _when(e["at"]),
                "" if e["since_prev_s"] is None else "+" + _dur(e["since_prev_s"]),
                e["kind"],
                _short(e["detail"], 100),
            )
            for e in entries
        ]
        say(render_table(table, ("TIME", "+DELTA", "KIND", "DETAIL"), right=(1,), width=terminal_width()))
        show_extras({"log_tail": extras["log_tail"]})
        return 0

    return guard(config, go)


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    from .queries import agent_stats

    async def go(pool: Any) -> int:
        rows = await agent_stats(pool, args.since)
        if args.json:
            for r in rows:
                print_json(r)
            return 0
        if not rows:
            say("no tasks in that window")
            return 0
        table = [
            (
                r["agent_id"],
                str(r["tasks"]),
                str(r["running"]),
                "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}",
                _dur(r["p50_s"]),
                _dur(r["p95_s"]),
                f"{r['input_tokens']:,}",
                f"{r['output_tokens']:,}",
                cost_text(r["cost_usd"], r["unpriced_calls"]),
            )
            for r in rows
        ]
        header = ("AGENT", "TASKS", "RUNNING", "SUCCESS", "P50", "P95", "TOKENS IN", "TOKENS OUT", "COST")
        say(_table(table, header, right=(1, 2, 3, 4, 5, 6, 7, 8)))
        return 0

    return guard(config, go)


def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from .queries import prune
    from .removals import floor_of

    async def go(pool: Any) -> int:
        floor = floor_of(config)
        deleted = await prune(pool, args.older_than, batch=max(1, args.batch), floor_s=floor)
        say(f"deleted {deleted} tasks inactive for more than {_dur(args.older_than)} with their rows")
        return 0

    return guard(config, go)


def cmd_audit_verify(args: argparse.Namespace, config: Config) -> int:
    from .auditchain import report, verify
    from .removals import floor_of
    from .signcli import verify_offline, verify_online

    if getattr(args, "offline", None) is not None:
        return verify_offline(args)

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            floor = floor_of(config)
            verdict = await verify(conn, getattr(args, "head", None), floor)
            signed, holds = await verify_online(conn, args, config)
        say(report(verdict))
        if signed is not None:
            say(signed)
        return 1 if verdict.problems or not holds else 0

    return guard(config, go)
