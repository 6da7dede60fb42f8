"""What the control API answers when a request could not be served.

The state store away (PostgreSQL stopped, restarting, unreachable) is a 503
with ``Retry-After`` and a JSON body naming the cause: the decision was not
judged, and sent again with the same intervention id it is recorded once
(had the first attempt been recorded, the retry is a ``duplicate``). Nothing
is held to be applied later: a decision is judged against the shared record
(the request still open, its question the one shown, nobody first), and an
"accepted" that turns into a refusal minutes later would mislead the person.
Anything else is a 500 with a JSON body. Either is logged once per interval
per cause with how many requests it answered since, never a traceback per
request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from spanvisor.control.client import STORE_DOWN
from spanvisor.statestores.api import outage_of

log = logging.getLogger("spanvisor.control")
# What a request the control API could not serve names as its cause.
CAUSE_STORE = STORE_DOWN
CAUSE_INTERNAL = "internal_error"
# Seconds a client waits before trying again while the state store is away.
RETRY_AFTER_S = 5
LOG_INTERVAL_S = 60.0


class ControlFailures:
    """One per control API: its failures, answered and logged."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        # cause -> (monotonic time it was last logged, requests since then)
        self._seen: dict[str, tuple[float, int]] = {}

    def answer(self, method: str, path: str, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
        """(status, JSON body, headers) for a request that raised ``exc``."""
        away = outage_of(exc)
        if away is not None:
            self.note(
                CAUSE_STORE,
                f"control API: the state store is unavailable ({away}); "
                f"decisions and reads get 503 Retry-After: {RETRY_AFTER_S} until it answers",
                exc,
            )
            doc = {
                "error": f"the state store is unavailable ({away}); retry in {RETRY_AFTER_S} s "
                "(a decision retried with the same intervention_id is recorded once)",
                "cause": CAUSE_STORE,
                "retry_after_s": RETRY_AFTER_S,
            }
            return 503, doc, {"Retry-After": str(RETRY_AFTER_S)}
        self.note(CAUSE_INTERNAL, f"control API: {method} {path[:200]} failed ({type(exc).__name__})", exc)
        doc = {"error": f"internal error ({type(exc).__name__}); see the server's log", "cause": CAUSE_INTERNAL}
        return 500, doc, {}

    def note(self, cause: str, message: str, exc: BaseException) -> None:
        now = time.monotonic()
        last, count = self._seen.get(cause, (-self.interval_s, 0))
        if now - last < self.interval_s:
            self._seen[cause] = (last, count + 1)
            return
        self._seen[cause] = (now, 0)
        more = f" ({count} more since the last report)" if count else ""
        if cause == CAUSE_INTERNAL:
            # The first of an interval with its traceback: a bug to report.
            log.error("%s%s", message, more, exc_info=exc)
        else:
            log.warning("%s%s", message, more)


__all__ = ["CAUSE_INTERNAL", "CAUSE_STORE", "RETRY_AFTER_S", "ControlFailures"]
