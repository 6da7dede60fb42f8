"""The console sink: what Slack would show, in the terminal.

It is the default when no Slack token is configured (log-only mode) and
what ``spanvisor demo`` shows. With ``console_detail`` at ``cards`` each task
gets a status card (the Slack parent message) when it starts, on every
status change and at most once per ``console_interval`` otherwise; thread
lines (milestones, warnings, errors, artifacts, people's decisions, the
summary with its results, a failure's last log lines) print as they happen,
indented under the task. A decision on a task not known here
(``known=False``) prints its line and no card.

At ``tasks`` it prints a log, not a screen: one line when a task starts,
one when it ends (outcome, duration, tokens, cost), one per person's
decision and one each time a task stalls or resumes (a task whose agent
died shows its stall before its loss); checkpoints print nothing. ``auto`` (the default) is ``tasks``
under ``spanvisor serve``, whose output is a service's log read by a
platform team beside PostgreSQL, ``/v1/events`` and ``/metrics`` (and where
cards for every agent of a fleet would also cost a share of the one core
the pipeline has), and ``cards`` everywhere else (the demo, in-process).

Agent text is stripped of control characters so a span cannot move the
cursor or recolour the terminal.

Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .sink import ConsoleSink

__all__ = ["ConsoleSink"]
__getattr__ = exports(__name__, {"ConsoleSink": ".sink"})
