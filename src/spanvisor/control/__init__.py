"""The way back from people to agents: decisions recorded once, read by all.

:mod:`.log` keeps each run's record (:mod:`.runs`: state, requests, decisions) in the shared state store;
:mod:`.hub` is what a process offers to record and read them
(docs/reference/interventions.md). The pipeline's side: :mod:`.judge` judges a decision
against the run's record and announces it to the sinks, :mod:`.runsync`
writes what the tracker learns of runs to that record.

The names below are imported when first used: a command that reads only
:mod:`.settings` (every one does, through the configuration) does not pay
for the hub and the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from spanvisor.control.hub import Control, Verdict, current
    from spanvisor.control.log import ControlLog

__all__ = ["Control", "ControlLog", "Verdict", "current"]
__getattr__ = exports(__name__, {"Control": ".hub", "Verdict": ".hub", "current": ".hub", "ControlLog": ".log"})
