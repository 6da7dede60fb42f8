"""The way back from people to agents: decisions recorded once, read by all.

:mod:`.log` keeps each run's record (:mod:`.runs`: state, requests, decisions) in the shared state store;
:mod:`.hub` is what a process offers to record and read them
(docs/reference/interventions.md). The pipeline's side: :mod:`.judge` judges a decision
against the run's record and announces it to the sinks, :mod:`.runsync`
writes what the tracker learns of runs to that record.
"""

from spanvisor.control.hub import Control, Verdict, current
from spanvisor.control.log import ControlLog

__all__ = ["Control", "ControlLog", "Verdict", "current"]
