"""Test-only fault points: a test stops ``spanvisor serve`` for good at one
chosen step of a decision, then kills it with SIGKILL, to prove what a crash
at exactly that step leaves behind (``tests/receiver/test_decided_crash.py``).
Timing a kill cannot hit a step that lasts microseconds; a fault point can.

Off unless the environment variable :data:`ENV` names a point (read once,
at import). A process that reaches the named point logs one line
(``test fault point <name> reached``) and that coroutine waits there for
ever; the rest of the process goes on. Never set it outside a test: a
decision held there is never answered.
"""

from __future__ import annotations

import asyncio
import logging
import os

ENV = "SPANVISOR_TEST_FAULT"
# Judged against nothing yet: the decision is not in the control log.
BEFORE_LOG = "decision.before_log"
# In the control log, committed (agents read it); not announced, not answered.
BEFORE_ANSWER = "decision.before_answer"
# Answered ``applied``; its audit row not written (the postgres sink holds it).
BEFORE_ROW = "decision.before_row"
POINTS = (BEFORE_LOG, BEFORE_ANSWER, BEFORE_ROW)

logger = logging.getLogger("spanvisor.control")
_ARMED = os.environ.get(ENV, "").strip()


def armed(point: str) -> bool:
    """Whether this process stops at ``point``."""
    return bool(_ARMED) and point == _ARMED


async def stop_at(point: str) -> None:
    """Return at once, unless the process stops at ``point``: then never."""
    if not armed(point):
        return
    logger.warning("test fault point %s reached: waiting here until the process is killed (%s)", point, ENV)
    await asyncio.get_running_loop().create_future()


__all__ = ["BEFORE_ANSWER", "BEFORE_LOG", "BEFORE_ROW", "ENV", "POINTS", "armed", "stop_at"]
