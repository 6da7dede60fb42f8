"""The console sink's class: cards and thread lines as the package describes
(:mod:`spanvisor_console`). Agent text is stripped of control characters so
a span cannot move the cursor or recolour the terminal."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from typing import IO, ClassVar

from spanvisor.config import Config, Setting
from spanvisor.display import task as pr
from spanvisor.display import thread
from spanvisor.display.readable import duration
from spanvisor.events import (
    Event,
    HumanIntervention,
    TaskFinished,
    TaskResumed,
    TaskStalled,
    TaskStarted,
    TaskView,
)
from spanvisor.sink import BaseSink, SinkContext, SinkResult
from spanvisor.tracking.recent import RecentKeys

from .settings import SETTINGS
from .settings import enabled as settings_enabled

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANSI = {"bold": "\x1b[1m", "dim": "\x1b[2m", "reset": "\x1b[0m"}
# Most log-tail lines printed under a failed task's error line.
LOG_LINES = 20
# Events remembered as printed; an event id is 32 hex digits (16 bytes).
SEEN_MAX = 100_000
EVENT_ID_BYTES = 16
# The events that make a line at console_detail=tasks; the rest print nothing there.
_TASK_LINE_KINDS = frozenset({TaskStarted, TaskFinished, HumanIntervention, TaskStalled, TaskResumed})


def clean(text: str | None, limit: int = 300) -> str:
    if not text:
        return ""
    s = _CONTROL.sub("", text.replace("\n", " ⏎ "))
    return s if len(s) <= limit else s[: limit - 1] + "…"


class ConsoleSink(BaseSink):
    name = "console"
    settings: ClassVar[Sequence[Setting]] = SETTINGS

    def __init__(self, stream: IO[str] | None = None, interval_s: float | None = None) -> None:
        super().__init__()
        self._stream = stream
        self._interval = interval_s
        self._color = False
        self._quiet = False
        self._tasks_only = False
        self._thresholds: tuple[float, ...] = (0.7, 0.85)  # until start() reads the config
        self._policy = thread.ThreadPolicy()
        self._last_card: dict[str, tuple[float, str]] = {}
        # The last events printed, to skip a replayed one: a fixed ring (a
        # plain dict's eviction scanned the holes at its front, O(n) each).
        self._seen = RecentKeys(SEEN_MAX, width=EVENT_ID_BYTES)

    @classmethod
    def enabled(cls, config: Config) -> bool:
        return settings_enabled(config)

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        c = ctx.config
        if self._stream is None:
            self._stream = sys.stderr if c.get("console_stream") == "stderr" else sys.stdout
        if self._interval is None:
            self._interval = float(c.get("console_interval_s", 2.0))
        mode = c.get("console_color", "auto")
        self._color = mode == "always" or (mode == "auto" and self._stream.isatty())
        self._quiet = bool(c.get("console_quiet_checkpoints", False))
        # serve_config turns auto into tasks for `spanvisor serve`.
        self._tasks_only = c.get("console_detail", "auto") == "tasks"
        self._thresholds = tuple(c.get("context_thresholds", (0.7, 0.85)))

    def _fmt(self, style: str, text: str) -> str:
        return f"{_ANSI[style]}{text}{_ANSI['reset']}" if self._color else text

    async def export(self, events: Sequence[Event]) -> SinkResult:
        lines = self._task_lines(events) if self._tasks_only else self._cards(events)
        if lines:
            out = self._stream or sys.stdout
            out.write("\n".join(lines) + "\n")
            out.flush()
        return SinkResult.SUCCESS

    def _cards(self, events: Sequence[Event]) -> list[str]:
        lines: list[str] = []
        now = time.monotonic()
        for ev in events:
            if not self._seen.remember(ev.event_id):
                continue  # a replayed event: printed already
            lines.extend(self._card(ev, now))
            for line in self._policy.lines(ev):
                lines.append(self._thread_line(ev.task, line))
        return lines

    def _task_lines(self, events: Sequence[Event]) -> list[str]:
        lines: list[str] = []
        for ev in events:
            # Checkpoints, warnings and the rest: skipped before any other work.
            if type(ev) not in _TASK_LINE_KINDS:
                continue
            if not self._seen.remember(ev.event_id):
                continue  # a replayed event: printed already
            v = ev.task
            if isinstance(ev, HumanIntervention):
                lines.append(self._thread_line(v, thread.intervention_line(ev)))
                continue
            who = f"{clean(v.agent_name or v.agent_id, 60)} · {clean(v.task_name or v.task_id, 120)}"
            # One line per crossing: the tracker says each stall and its
            # resume once (a replay is skipped above).
            if isinstance(ev, TaskStalled):
                lines.append(f"⏸️ {who} · stalled: no sign of life for {duration(ev.idle_s)}")
                continue
            if isinstance(ev, TaskResumed):
                lines.append(f"▶️ {who} · resumed: a sign of life after {duration(ev.idle_s)}")
                continue
            _, emoji, _ = pr.STATUS_STYLE.get(v.status, pr.STATUS_STYLE["working"])
            head = f"{emoji} {who}"
            if isinstance(ev, TaskFinished):
                lines.append(f"{head} · {clean(pr.summary_text(ev, with_results=False), 300)}")
            else:
                named = f" (task {clean(v.task_id, 80)})" if v.task_name and v.task_name != v.task_id else ""
                lines.append(f"{head} · started{named}")
        return lines

    def _card(self, ev: Event, now: float) -> list[str]:
        v = ev.task
        if isinstance(ev, HumanIntervention) and not ev.known:
            # Not a view of the task's state here (finished, another replica's,
            # or ids only): the decision's own line says it all.
            return []
        last = self._last_card.get(v.task_id)
        # starting -> working is the normal first move, not news worth a card.
        status_changed = last is None or (last[1] != v.status and (last[1], v.status) != ("starting", "working"))
        due = last is None or now - last[0] >= (self._interval or 0)
        if isinstance(ev, TaskFinished):
            self._last_card.pop(v.task_id, None)
            return [self.render_card(v, ev.time_ns)]
        if v.ended_ns is not None:
            # A correction after the end (TaskCorrected): its card was printed;
            # the thread line below says what the late span added.
            return []
        if isinstance(ev, TaskStarted) or status_changed or (due and not self._quiet):
            self._last_card[v.task_id] = (now, v.status)
            return [self.render_card(v, ev.time_ns)]
        return []

    def render_card(self, v: TaskView, now_ns: int) -> str:
        _, emoji, _ = pr.STATUS_STYLE.get(v.status, pr.STATUS_STYLE["working"])
        head = f"{emoji} {clean(v.agent_name or v.agent_id, 60)} · {pr.status_text(v)}"
        name = clean(v.task_name or v.task_id, 120)
        parts = [self._fmt("bold", f"{head} — {name}")]
        detail = [
            pr.progress_bar(pr.progress_of(v)),
            f"context {pr.context_usage(v, self._thresholds)}",
            f"elapsed {duration(pr.elapsed(v, now_ns))}",
        ]
        cost = pr.cost_text(v)
        if cost:
            detail.append(cost if cost.startswith("cost") else f"cost {cost}")
        if v.repo:
            detail.append(f"repo {clean(v.repo, 80)}" + (f" @ {clean(v.branch, 60)}" if v.branch else ""))
        if v.pull_request:
            detail.append(f"PR {clean(v.pull_request, 120)}")
        parts.append("   " + "  │  ".join(detail))
        steps = pr.steps_line(v)
        if steps:
            parts.append("   steps: " + clean(steps, 200))
        if last := pr.last_action(v):
            parts.append("   last: " + clean(last, 200))
        if v.artifacts:
            parts.append("   artifacts: " + ", ".join(clean(a.name, 60) for a in v.artifacts[:5]))
        return "\n".join(parts)

    def _thread_line(self, v: TaskView, line: thread.ThreadLine) -> str:
        # A bare view (a decision on a task not known here) has no agent: name the task.
        who = clean(v.agent_name or v.agent_id, 30) if v.trace_id else clean(f"task {v.task_id}", 40)
        # Summaries are ours, but a person's name (decisions) or a result's
        # name (the summary) came from outside: stripped like the rest.
        summary = clean(line.lead or line.summary, 400) if line.fields else clean(line.summary, 400)
        text = f"   └ {line.emoji} [{who}] {summary}"
        if line.detail:
            text += ": " + clean(line.detail, 200)
        if line.fields:
            text += "\n" + self._fmt("dim", "       " + clean(" · ".join(f"{k}: {x}" for k, x in line.fields), 300))
        if line.code:
            tail = [clean(x, 160) for x in line.code.strip().splitlines()[-3:]]
            text += "\n" + "\n".join(self._fmt("dim", "       " + x) for x in tail)
        if line.logs:
            logs = [clean(x, 200) for x in line.logs.splitlines()[-LOG_LINES:]]
            text += "\n" + self._fmt("dim", "       last log lines:")
            text += "\n" + "\n".join(self._fmt("dim", "         " + x) for x in logs)
        return text
