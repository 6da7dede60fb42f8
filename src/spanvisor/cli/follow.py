"""``spanvisor follow``: the event stream in a terminal (``GET /v1/events``).

On a terminal: a live table of the open tasks (status, a progress bar,
step, tokens, cost), redrawn as events arrive, above the latest event
lines. Piped: one line per event, nothing redrawn. It reconnects by itself
with ``Last-Event-ID`` (no event lost or shown twice across a drop), and on
``event: reset`` forgets the table and starts again from what comes next.
Task ids are shown as ``spanvisor tasks`` shows them (12 characters),
money as dollars, ratios as percentages; a task waiting for a person shows
its question and the command that answers it, as it works when pasted.
Exit status: 0 after ``--events`` events, Ctrl-C, or a stream that ended
and did not come back within ``--wait`` (default 30 s; said in one line),
1 refused (a bad token or bad filters), 2 nothing answered at the URL
before the first event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from spanvisor.cli.approvals import clip
from spanvisor.cli.pasteable import with_name
from spanvisor.config import Config
from spanvisor.control.client import DEFAULT_URL, ENV_URL, token_from_env
from spanvisor.display.readable import answer_command, usd
from spanvisor.gate import servetoken

BAR = 20
LINES = 15
BACKOFF_MAX_S = 5.0
TERMINAL = ("complete", "error", "cancelled", "lost", "evicted")
SHORT_ID = 12  # as `spanvisor tasks` shows a task id
# How long a stream that ended is tried again before follow says so and exits.
ENDED_WAIT_S = 30.0


def short_id(task_id: Any) -> str:
    return str(task_id)[:SHORT_ID]


def _pct(ratio: Any) -> str:
    return f"{float(ratio):.0%}" if isinstance(ratio, int | float) else "?"


def _amount(value: Any, unit: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return usd(float(value)) if unit == "usd" else f"{value:,.0f} tokens"


def answer_lines(task_id: str, run_id: Any, task: dict[str, Any], url: str | None) -> list[str]:
    """Each open request of a task: its question, then the command that
    answers it (as ``spanvisor approvals`` prints it, with ``--url``)."""
    out = []
    for a in task.get("approvals") or ():
        if not isinstance(a, dict):
            continue
        digest = a.get("digest")
        command = answer_command(task_id, str(run_id or ""), str(a.get("approval_id")), str(digest or "") or None)
        out.append(
            f"  ✋ {short_id(task_id)} {clip(str(a.get('approval_id')), 16)}: {clip(str(a.get('question')), 100)}"
        )
        out.append(f"     {with_name(command, url)}   (or: reject)")
    return out


def bar(progress: Any, width: int = BAR) -> str:
    if not isinstance(progress, int | float):
        return "·" * width
    filled = max(0, min(width, round(width * float(progress) / 100)))
    return "█" * filled + "░" * (width - filled) + f" {float(progress):3.0f}%"


def event_line(kind: str, doc: dict[str, Any]) -> str:
    """One event as a line: time, kind, task, and what it says."""
    t = str(doc.get("time") or "")[11:19]
    task = doc.get("task") or {}
    what = ""
    if kind == "intervention":
        actor = (doc.get("actor") or {}).get("name") or (doc.get("actor") or {}).get("id")
        what = f"{doc.get('action')} by {actor}" + (f": {doc['comment']}" if doc.get("comment") else "")
        if doc.get("outcome") == "denied":  # refused: nothing was done
            what = f"refused ({doc.get('code') or 'denied'}): {what}"
    elif kind == "task_finished":
        what = f"{doc.get('outcome')} in {float(doc.get('duration_s') or 0):.1f}s"
        if doc.get("error_message"):
            what += f": {doc['error_message']}"
    elif kind == "context_warning":
        what = f"{doc.get('level')}: context at {_pct(doc.get('ratio'))}"
    elif kind == "context_forecast":
        calls = doc.get("calls")
        what = f"context at {_pct(doc.get('ratio'))}: {_pct(doc.get('threshold'))} in about {calls} call" + (
            "" if calls == 1 else "s"
        )
    elif kind == "budget_warning":
        unit = doc.get("unit")
        what = (
            f"{doc.get('scope')} budget at {_pct(doc.get('level'))}: "
            f"{_amount(doc.get('used'), unit)} of {_amount(doc.get('budget'), unit)}"
        )
    else:
        what = str(task.get("message") or task.get("step") or task.get("status") or "")
        if kind == "checkpoint" and doc.get("changed"):
            what += f" ({doc.get('source')}: {', '.join(map(str, doc['changed']))})"
    return clip(f"{t} {kind:<16} {short_id(doc.get('task_id'))} {what}", 160)


@dataclass
class View:
    """The open tasks and the latest lines, as the stream told them."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LINES))
    runs: dict[str, Any] = field(default_factory=dict)  # task id -> its run, for the answer commands
    url: str | None = None  # the --url follow was given: the answer commands carry it

    def take(self, kind: str, doc: dict[str, Any]) -> str:
        """The event's line; with a request it newly waits on, the lines that answer it."""
        line = event_line(kind, doc)
        self.lines.append(line)
        task_id = str(doc.get("task_id"))
        task = doc.get("task") or {}
        if kind != "intervention" and task:
            former = task.get("former_id")
            if former and former in self.tasks:
                # Its root named its id: the same task, not a second one (its requests not asked again).
                self.tasks.setdefault(task_id, self.tasks.pop(former))
                self.runs.setdefault(task_id, self.runs.pop(former, None))
            before = {a.get("approval_id") for a in (self.tasks.get(task_id) or {}).get("approvals") or ()}
            if task.get("status") in TERMINAL:
                self.tasks.pop(task_id, None)
                self.runs.pop(task_id, None)
            else:
                self.tasks[task_id] = task
                self.runs[task_id] = doc.get("run_id")
                asked = [a for a in task.get("approvals") or () if a.get("approval_id") not in before]
                if asked:
                    more = answer_lines(task_id, doc.get("run_id"), {"approvals": asked}, self.url)
                    return "\n".join([line, *more])
        return line

    def render(self) -> str:
        head = f"{'TASK':<{SHORT_ID}} {'AGENT':<12} {'STATUS':<18} {'PROGRESS':<{BAR + 5}}"
        out = [f"{head} {'TOKENS IN/OUT':>17} {'COST':>8}  STEP"]
        waiting: list[str] = []
        for task_id, t in sorted(self.tasks.items()):
            tokens = f"{int(t.get('input_tokens') or 0):,}/{int(t.get('output_tokens') or 0):,}"
            out.append(
                f"{short_id(task_id):<{SHORT_ID}} {clip(str(t.get('agent_id')), 12):<12} "
                f"{clip(str(t.get('status')), 18):<18} {bar(t.get('progress')):<{BAR + 5}} {tokens:>17} "
                f"{usd(float(t.get('cost_usd') or 0)):>8}  {clip(str(t.get('step') or ''), 30)}"
            )
            waiting += answer_lines(task_id, self.runs.get(task_id), t, self.url)
        if not self.tasks:
            out.append("(no open task)")
        if waiting:
            out += ["", "Waiting for a person:", *waiting]
        return "\n".join([*out, "", *self.lines])


async def follow(
    url: str,
    token: str | None,
    query: dict[str, str],
    out: TextIO,
    events: int | None,
    wait_s: float | None = None,
    given_url: str | None = None,
) -> int:
    """Print the stream until ``events`` were seen (or forever).

    ``wait_s``: how long to keep trying while nothing has answered yet (None:
    until interrupted; 0: give up at once). Started beside ``make demo`` or a
    ``serve`` that is still starting, it waits for it instead of failing.
    Once connected, a stream that ends is tried again for ``wait_s`` (default
    :data:`ENDED_WAIT_S`: a restarting ``serve`` comes back), then it says
    so and returns 0. ``given_url``: the ``--url`` to put in the commands
    it prints."""
    import aiohttp

    live = out.isatty()
    view = View(url=given_url)
    last_id: str | None = None
    seen = 0
    backoff = 0.5
    connected_once = False
    waiting_since: float | None = None
    while True:
        # No token given: the local serve's own, for this user's listener on
        # loopback only, asked at each connection (serve may be restarting).
        sending = servetoken.bearer(url, token)
        headers = {"Accept": "text/event-stream"}
        if sending.token:
            headers["Authorization"] = f"Bearer {sending.token}"
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            if sending.refused:  # not this user's serve (yet): waited for as one that does not answer
                raise ConnectionRefusedError(sending.refused)
            timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url.rstrip("/") + "/v1/events", params=query, headers=headers) as resp,
            ):
                if resp.status != 200:
                    print(f"spanvisor: the event stream said HTTP {resp.status}: {await resp.text()}", file=sys.stderr)
                    if resp.status in (401, 400, 403, 404):
                        return 1
                    raise ConnectionError(f"HTTP {resp.status}")
                connected_once = True
                waiting_since = None
                backoff = 0.5
                fields: dict[str, str] = {}
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line:
                        if not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value[1:] if value.startswith(" ") else value
                        continue
                    if "data" not in fields:
                        fields = {}
                        continue
                    kind, data = fields.get("event", "message"), fields["data"]
                    last_id = fields.get("id", last_id)
                    fields = {}
                    if kind == "reset":
                        view.tasks.clear()
                        view.lines.append("— reset: the stream lost our place; showing what comes next —")
                    else:
                        printed = view.take(kind, json.loads(data))
                        if not live:
                            print(printed, file=out, flush=True)
                        seen += 1
                    if live:
                        out.write("\x1b[H\x1b[2J" + view.render() + "\n")
                        out.flush()
                    if events is not None and seen >= events:
                        return 0
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, aiohttp.ClientConnectorDNSError) as exc:
            # Waiting helps a server that is still starting, never a URL
            # that cannot name one.
            why = "cannot find its host" if isinstance(exc, aiohttp.ClientConnectorDNSError) else "is not a URL"
            print(f"spanvisor: {url} {why} ({exc}); give --url http://HOST:PORT", file=sys.stderr)
            return 2
        except (aiohttp.ClientError, ConnectionError, OSError, TimeoutError) as exc:
            now = time.monotonic()
            if waiting_since is None:
                waiting_since = now
                if not connected_once and wait_s != 0:
                    print(f"spanvisor: waiting for the event stream at {url} ({exc}) …", file=sys.stderr)
            if not connected_once:
                if wait_s is not None and now - waiting_since >= wait_s:
                    print(f"spanvisor: no event stream at {url}: {exc}", file=sys.stderr)
                    return 2
            else:
                limit = ENDED_WAIT_S if wait_s is None else wait_s
                if now - waiting_since >= limit:
                    print(
                        f"spanvisor: the event stream at {url} ended and did not come back within {limit:g}s "
                        f"({exc}); stopped after {seen} events",
                        file=sys.stderr,
                    )
                    return 0
        await asyncio.sleep(backoff)  # the server ended the stream or the connection dropped: resume
        backoff = min(BACKOFF_MAX_S, backoff * 2)


def handler(args: argparse.Namespace, config: Config) -> int:
    url = args.url or config.get("control_url") or os.environ.get(ENV_URL) or DEFAULT_URL
    token = args.token or config.get("control_token") or token_from_env()
    query = {k: v for k, v in (("task", args.task), ("agent", args.agent), ("kind", args.kind)) if v}
    try:
        return asyncio.run(follow(url, token, query, sys.stdout, args.events, args.wait, args.url))
    except KeyboardInterrupt:
        return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("follow", help="follow the tasks live: the event stream in the terminal")
    p.add_argument("--task", help="only these tasks (comma-separated ids)")
    p.add_argument("--agent", help="only these agents (comma-separated)")
    p.add_argument("--kind", help="only these event kinds (comma-separated, e.g. task_finished,intervention)")
    p.add_argument("--url", help=f"spanvisor serve or the demo (default: ${ENV_URL} or {DEFAULT_URL})")
    p.add_argument(
        "--token",
        help="bearer token (default: $SPANVISOR_CONTROL_TOKEN or $SPANVISOR_OTLP_TOKEN, else a local serve's own)",
    )
    p.add_argument("--events", type=int, help="stop after this many events")
    p.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="while nothing answers yet, keep trying this long (default: until interrupted; 0: exit 2 at once); "
        f"once connected, how long a stream that ended is tried again before follow stops (default {ENDED_WAIT_S:g})",
    )
    p.set_defaults(func=handler)


__all__ = ["View", "answer_lines", "bar", "event_line", "follow", "handler", "register", "short_id"]
