"""``spanvisor interventions`` and the parts of ``spanvisor task`` that show a
task's results, its people's decisions and its last log lines.

Everything printed here was typed by an agent or a person: control
characters (a terminal escape could move the cursor or recolour the screen)
are shown as ``?`` and line breaks as ``⏎``, and cells are clipped to fit.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from spanvisor.config import p_duration
from spanvisor.display.readable import result_value
from spanvisor.events import ResultField

from .clirun import guard
from .output import print_json, say, terminal_width
from .output import table as render_table

if TYPE_CHECKING:
    from spanvisor.config import Config

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object, limit: int | None = None) -> str:
    """One line of ``text`` that is safe to print on a terminal."""
    s = _CONTROL.sub("?", str(text if text is not None else "").replace("\r\n", "\n").replace("\n", " ⏎ "))
    s = s.replace("\t", " ")
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def since_arg(v: str) -> datetime:
    """``--since``: a duration back from now (``1h``, ``7d``) or an ISO time
    (``2026-11-22T14:00``, local time unless it names its zone)."""
    try:
        return datetime.now(UTC) - timedelta(seconds=p_duration(v))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{v!r} is neither a duration (30m, 1h, 7d) nor an ISO time (2026-11-22T14:00)"
        ) from None
    return when.astimezone() if when.tzinfo is None else when


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("interventions", help="people's decisions on tasks (approvals, cancels, retries...)")
    p.add_argument("--task", metavar="ID", help="only this task (an id or the start of one)")
    p.add_argument("--since", type=since_arg, metavar="WHEN", help="a duration (1h, 7d) or an ISO time")
    p.add_argument("--limit", type=int, default=100, help="most rows (default 100)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_interventions)


def _when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _note(row: dict[str, Any]) -> str:
    """Why it was denied, and what the person said."""
    parts = []
    if row.get("outcome") == "denied" and row.get("reason"):
        parts.append(str(row["reason"]))
    if row.get("comment"):
        parts.append(f'"{row["comment"]}"')
    return " · ".join(parts) or "-"


def interventions_table(rows: list[dict[str, Any]]) -> str:
    table = [
        (
            _when(r["at"]),
            printable(r["task_id"], 12),
            printable(r.get("agent_id") or "-", 16),
            printable(r["action"], 12) + (f" {printable(r['approval_id'], 20)}" if r.get("approval_id") else ""),
            printable(_who(r), 32),
            printable(r.get("source") or "-", 8),
            printable(r["outcome"] + (f" ({r['refusal']})" if r.get("refusal") else ""), 28),
            printable(r.get("question") or "-", 60),
            printable(_note(r), 120),
        )
        for r in rows
    ]
    header = ("TIME", "TASK", "AGENT", "ACTION", "WHO", "VIA", "OUTCOME", "QUESTION", "REASON / COMMENT")
    return render_table(table, header, width=terminal_width())


def _who(row: dict[str, Any]) -> str:
    from .humanqueries import who

    return who(row)


def cmd_interventions(args: argparse.Namespace, config: Config) -> int:
    from .humanqueries import list_interventions

    async def go(pool: Any) -> int:
        rows = await list_interventions(pool, args.task, args.since, max(1, args.limit))
        if args.json:
            for r in rows:
                print_json(r)
            return 0
        if not rows:
            say("no interventions match")
            return 0
        say(interventions_table(rows))
        return 0

    return guard(config, go)


async def task_extras(conn: Any, task_id: str, former_id: str | None = None) -> dict[str, Any]:
    """What ``spanvisor task`` shows beside the timeline (``former_id``: the
    id a renamed task showed under, whose decisions are the task's)."""
    from .humanqueries import task_interventions, task_log_tail

    return {
        "interventions": await task_interventions(conn, task_id, former_id),
        "log_tail": await task_log_tail(conn, task_id),
    }


def result_field(item: Any) -> ResultField | None:
    """A stored result (``{"name", "value", "unit"}`` from agent_tasks.results)
    as the value object the sinks format; None for anything else."""
    if not isinstance(item, dict):
        return None
    value, unit = item.get("value"), item.get("unit")
    if not isinstance(value, bool | int | float | str):
        return None
    return ResultField(str(item.get("name") or "?"), value, str(unit) if unit else None)


def show_results(results: list[Any] | None) -> None:
    """``downtime_avoided: 1h 30m``: each result as the console and Slack
    show it (:func:`spanvisor.display.readable.result_value`), all of them."""
    fields = [f for f in map(result_field, results or ()) if f is not None]
    for i, f in enumerate(fields):
        say(f"{'results' if i == 0 else '':>9}  {printable(f'{f.name}: {result_value(f)}', 200)}")


def show_extras(extras: dict[str, Any]) -> None:
    """The task's interventions and log tail, each under its own heading."""
    rows = extras.get("interventions") or []
    if rows:
        say("")
        say("INTERVENTIONS")
        say(interventions_table(rows))
    logs = extras.get("log_tail") or []
    if logs:
        say("")
        say("LOG TAIL")
        table = [
            (
                _when(r["at"]),
                printable(r["level"], 8),
                printable(r.get("logger") or "-", 32),
                printable(r["message"], 300),
            )
            for r in logs
        ]
        say(render_table(table, ("TIME", "LEVEL", "LOGGER", "MESSAGE"), width=terminal_width()))
