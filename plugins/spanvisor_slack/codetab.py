"""A code channel's work-log tab: the session's story at a glance, pinned
above the channel (``agents.conversations.setView``, ``type: block_kit``).

The channel scrolls; the tab stays. It shows what the task's parent shows,
from the same view (the one the parent last showed, the same on every
replica: :meth:`.codechannels.CodeChannels.shown`): status, every step with
the current one marked (the parent shows one step either side), the last
action, model, tokens, context and cost, the people's decisions, the
artifacts and, once it ended, its results. Tool calls are not listed: a
replica sees only the calls it carried, so the tab would differ by replica;
they are counted in the thread's work log.

Its content changes only when the view does (no clock in it), so a quiet
task costs no call. It is sent at Slack's routine rank at most once per
:data:`TAB_INTERVAL_S` (or the parent's update interval when longer; at
each change when that interval is 0), and once more at the end, before the
channel is archived. Every string from spans is escaped and clipped (:mod:`.text`);
Block Kit's limits on a tab are UNCONFIRMED, so a message's apply, with at
most :data:`MAX_BLOCKS` blocks.
"""

from __future__ import annotations

import json
from typing import Any

from spanvisor.display.readable import actor, clock, decision_text, results
from spanvisor.display.task import context_usage, cost_text, last_action, status_text, tokens
from spanvisor.events import TaskView

from .sessions import title_of
from .text import safe

SET_VIEW = "agents.conversations.setView"
REMOVE_VIEW = "agents.conversations.removeView"
DIFF_NAME = "Diff"
VIEW_KEY = "spanvisor/work-log"
NAME = "Work log"
# Seconds between two sends of a changing tab (the last one is sent at the end).
TAB_INTERVAL_S = 10.0
MAX_BLOCKS = 40
MAX_STEPS = 30  # steps listed; more are counted
MAX_DECISIONS = 10
SECTION = 2900  # a section's text, under Block Kit's 3,000
HEADER = 150
_MARKS = {"complete": "✓", "error": "✗", "cancelled": "⏹", "lost": "?", "evicted": "⏏"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION] or " "}}


def steps_text(view: TaskView) -> str | None:
    """Every step, one per line: done ✓, the current one ▶ (or how the task
    ended), the rest ○; at most :data:`MAX_STEPS`, the rest counted."""
    if not view.steps:
        return f"▶ {safe(view.step, 300)}" if view.step else None
    i = view.step_index
    final = _MARKS.get(view.status)
    lines = []
    for n, step in enumerate(view.steps[:MAX_STEPS]):
        if i is None:
            mark = "○"
        elif n < i:
            mark = "✓"
        elif n == i:
            mark = final or "▶"
        else:
            mark = "○"
        lines.append(f"{mark} {safe(step, 200)}")
    if len(view.steps) > MAX_STEPS:
        lines.append(f"… and {len(view.steps) - MAX_STEPS} more")
    return "\n".join(lines)


def tab_blocks(view: TaskView) -> list[dict[str, Any]]:
    """The tab's Block Kit blocks for ``view``."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title_of(view)[:HEADER] or "Task"}}
    ]
    facts = [f"*Status:* {safe(status_text(view), 100)}"]
    if view.model:
        facts.append(f"*Model:* {safe(view.model, 100)}")
    facts.append(f"*Tokens:* {tokens(view.input_tokens)} in, {tokens(view.output_tokens)} out")
    if view.context_tokens is not None:
        facts.append(f"*Context:* {context_usage(view)}")
    if (cost := cost_text(view)) is not None:
        facts.append(f"*Cost:* {cost}")
    if view.started_ns:
        span = clock(view.started_ns) + (f" to {clock(view.ended_ns)}" if view.ended_ns else "")
        facts.append(f"*When:* {span}")
    blocks.append(_section("\n".join(facts)))
    if (steps := steps_text(view)) is not None:
        blocks.append(_section(f"*Steps*\n{steps}"))
    if (said := last_action(view)) is not None:
        blocks.append(_section(f"*Last:* {safe(said, 1000)}"))
    if view.decisions:
        shown = [decision_text(d, safe(actor(d), 100)) for d in view.decisions[-MAX_DECISIONS:]]
        blocks.append(_section("*Decisions*\n" + "\n".join(shown)))
    if view.artifacts:
        names = [safe(a.name, 200) for a in view.artifacts[:20]]
        blocks.append(_section("*Artifacts*\n" + "\n".join(f"• {n}" for n in names)))
    if view.ended_ns and view.results:
        pairs = results(view.results)
        blocks.append(_section("*Results*\n" + "\n".join(f"{safe(k, 100)}: {safe(v, 300)}" for k, v in pairs)))
    return blocks[:MAX_BLOCKS]


def tab_text(view: TaskView) -> str:
    """The tab as the text a change is told by (compact JSON of its blocks)."""
    return json.dumps(tab_blocks(view), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


__all__ = [
    "DIFF_NAME",
    "NAME",
    "REMOVE_VIEW",
    "SET_VIEW",
    "TAB_INTERVAL_S",
    "VIEW_KEY",
    "steps_text",
    "tab_blocks",
    "tab_text",
]
