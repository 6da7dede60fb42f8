"""Teams' limits, kept before sending (the shared :class:`Pacer`), and the
one way every connector call goes out.

Teams limits a bot per thread (a channel's thread, or a conversation) to
7 calls in 1 s, 8 in 2 s, 60 in 30 s and 1,800 in an hour, and an app to
50 a second in all ("Rate limiting for agents"; sending and updating both
count). A token bucket of rate ``r`` and burst ``b`` lets at most
``b + r·W`` calls into any window of ``W`` seconds. Over the long run the
hour binds: 1,800/h is 30/min, below 60 in 30 s (120/min) and the 1 s and
2 s windows. Each thread's bucket runs at nine tenths of that, 27/min
(0.45/s), with a burst of 5, so:

- 1 s: 5 + 0.45 = 5.45 < 7;  2 s: 5 + 0.9 = 5.9 < 8;
- 30 s: 5 + 13.5 = 18.5 < 60;  1 h: 5 + 1,620 = 1,625 < 1,800;

and the slack in the short windows (1.5 calls at least) absorbs the
network's jitter: calls taken apart may land closer together. Creating a
thread counts on its channel, so a new thread's call takes the channel's
bucket; replies and updates take the thread's. The app's bucket runs at
40/s with a burst of 4 (4 + 40 = 44 < 50 in any second; the six calls
to spare absorb the network's jitter when every thread calls at once).

Calls wait by rank (a question for a person or a failure first, then a
status change and the thread's lines, then routine edits; see
:mod:`spanvisor.chat.pacing`). A 429 anyway (another process of the same
app) pauses the thread for ``Retry-After`` and its bucket starts empty
after it. 412 (concurrent operations on the conversation), 502, 503, 504
and transport failures are sent again with backoff, as Teams asks; the
connector has no idempotency key, so a POST whose answer was lost may show
twice (counted in ``teams_resent_total``). Everything else (413
``MessageSizeTooBig``, 403 roster, 404, 500 ``ServiceError``, a refused
token) is the caller's to handle.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from spanvisor.chat.pacing import Interrupt, Limit, Pacer
from spanvisor.chat.retry import Failure, RateLimitStrategy, ServerErrorStrategy
from spanvisor.chat.sending import PacedSender
from spanvisor.sink import Clock
from spanvisor.stats import PipelineStats

from .api import Connector, Reply

log = logging.getLogger("spanvisor.teams")
GLOBAL = "app"
MARGIN = 0.9
# The app's 50 a second is shared by every thread at once, so its bucket keeps
# more room for the network's jitter than a thread's (measured: bench_teams.py).
APP_MARGIN = 0.8
THREAD_BURST = 5
# The ops a caller names: every one but an update is a POST, which Teams
# does twice when sent twice; a PUT sent again only sets the same content.
CREATE, SEND, UPDATE = "create", "send", "update"
# What Teams says to retry with backoff, by the names Failure carries.
RETRY_STATUSES = frozenset({412, 502, 503, 504})
RETRYABLE = frozenset({"connection", "timeout", *(f"http_{s}" for s in RETRY_STATUSES)})
# A call that stepped out of its wait: its caller sends something better first.
DEFERRED = Reply(False, code="deferred", error="deferred")


@dataclass(frozen=True, slots=True)
class Rates:
    thread_per_minute: float = 30.0
    app_per_second: float = 50.0


class Poster:
    """Sends one connector call when its thread's turn comes; retries what is worth it."""

    def __init__(self, connector: Connector, clock: Clock, stats: PipelineStats, rates: Rates = Rates()) -> None:
        self.connector, self.clock, self.stats, self.rates = connector, clock, stats, rates
        app = rates.app_per_second * APP_MARGIN
        self.pacer = Pacer(clock, {GLOBAL: Limit(app * 60.0, max(1, int(app) // 10))})
        strategies = (RateLimitStrategy(), ServerErrorStrategy(retryable=RETRYABLE))
        self.sender = PacedSender("teams", clock, self.pacer, GLOBAL, strategies, stats, label="op")

    def _bucket(self, thread: str) -> str:
        key = f"thread:{thread}"
        if key not in self.pacer.limits:
            self.pacer.limits[key] = Limit(self.rates.thread_per_minute * MARGIN, THREAD_BURST)
        return key

    async def send(
        self,
        op: str,
        thread: str,
        call: Callable[[], Awaitable[Reply]],
        *,
        rank: int,
        key: str = "",
        end: Callable[[], float | None],
        interrupt: Interrupt | None = None,
    ) -> Reply | None:
        """``call``'s answer (ok, or an error no retry mends); None when ``end``
        came first (shutting down); :data:`DEFERRED` when ``interrupt`` said
        its caller has something better to send while this one waited.

        ``thread`` is what Teams counts the call on: the thread's conversation
        id, or the channel's id for creating a thread. ``call`` is made again
        for each try, so it may build its activity from the latest state."""
        answer = await self.sender.send(
            self._bucket(thread),
            op,
            call,
            _failure(op),
            rank=rank,
            key=key,
            end=end,
            interrupt=interrupt,
            # A PUT sent again only sets the same content; a POST may show twice.
            resent=lambda a: a.sent_maybe and op != UPDATE,
        )
        return DEFERRED if answer == "deferred" else answer

    async def close(self) -> None:
        await self.connector.close()


def _failure(op: str) -> Callable[[Reply, int], Failure | None]:
    def failure(answer: Reply, attempt: int) -> Failure | None:
        if answer.ok:
            return None
        if answer.status >= 500 and answer.status not in RETRY_STATUSES:
            # ServerErrorStrategy would retry every 5xx; Teams says a 500
            # ServiceError is not worth it.
            return None
        reason = f"http_{answer.status}" if answer.status else answer.code
        return Failure(op, reason, answer.status, answer.retry_after_s, attempt)

    return failure


__all__ = ["CREATE", "DEFERRED", "SEND", "UPDATE", "Poster", "Rates"]
