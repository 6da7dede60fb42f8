"""When the gate must have answered: before the CLI gives up on its hook.

Every CLI kills a hook that runs past its hook timeout, and what it does
then is the CLI's choice (every one runs the call). So the gate works
against one deadline, taken from the CLI's hook timeout (``--cli-timeout``,
else that CLI's documented default, its adapter's ``hook_timeout_s``) less a margin for the answer to be
read, counted from the hook process's start and carried through every path
(the launcher's socket, the deciding child, the launcher's thread): asking
a person, waiting, checking the approval and anything else end by
:attr:`Deadline.at`, and the policy's ``on_timeout`` answers in time.

Within the margin, backstops in order, each a block if nothing answered:
the launcher's thread (:meth:`Deadline.launcher_backstop`), the hook giving
up on the launcher and deciding by itself with no time left to ask anyone
(:meth:`Deadline.launcher_given_up`), the deciding process's timer
(:meth:`Deadline.backstop`), and the waiting parent killing it
(:meth:`Deadline.last`), a quarter of the margin before the CLI's limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import NamedTuple

from spanvisor.clis import registry
from spanvisor.clis.adapter import Adapter

# Room left before the CLI's limit for the answer to be read, and for this
# process's own start, which the deadline does not see.
MIN_MARGIN_S, MAX_MARGIN_S = 2.0, 10.0
# The hook process's start (time.monotonic(), the same clock in every
# process of the machine) when another process started it for the call: the
# launcher's small client hands it on to the full hook.
ENV_STARTED = "SPANVISOR_HOOK_STARTED"


def margin_s(cli_timeout: float) -> float:
    return min(MAX_MARGIN_S, max(MIN_MARGIN_S, 0.15 * cli_timeout))


class Deadline(NamedTuple):
    """The monotonic time by which the answer must be written."""

    at: float
    cli_timeout: float

    @classmethod
    def for_cli(cls, cli: str | None, given: float | None, started: float | None = None) -> Deadline:
        """Counted from ``started`` (else now): ``given`` (``--cli-timeout``),
        else the CLI's default hook timeout (its adapter's; a CLI nobody
        knows gets the base adapter's)."""
        if given is not None and given > 0 and math.isfinite(given):
            limit = given
        else:
            adapter = registry.get(cli) if cli else None
            limit = adapter.hook_timeout_s if adapter is not None else Adapter.hook_timeout_s
        t0 = time.monotonic() if started is None else started
        return cls(t0 + max(0.0, limit - margin_s(limit)), limit)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @property
    def margin(self) -> float:
        return margin_s(self.cli_timeout)

    def launcher_backstop(self) -> float:
        """When the launcher's thread blocks a call it has not answered."""
        return self.at + self.margin / 4

    def launcher_given_up(self) -> float:
        """When a hook stops waiting for a silent launcher and decides by itself."""
        return self.at + 3 * self.margin / 8

    def backstop(self) -> float:
        """When the deciding process's own timer blocks."""
        return self.at + self.margin / 2

    def last(self) -> float:
        """When the waiting parent kills the deciding child and blocks."""
        return self.at + 3 * self.margin / 4


def started_from(env: Mapping[str, str], now: float) -> float:
    """The hook's start: ``now``, or an earlier start handed on in
    :data:`ENV_STARTED` (within the last minute; anything else is ignored)."""
    try:
        given = float(env.get(ENV_STARTED) or "")
    except ValueError:
        return now
    return given if math.isfinite(given) and now - 60.0 <= given <= now else now


def wait_budget(timeout_s: float, deadline: Deadline) -> float:
    """How long a person has: the policy's timeout, cut short by the
    deadline (whole seconds, as people read them); 0 when there is no time
    left to ask."""
    return float(min(timeout_s, max(0, math.floor(deadline.left()))))


__all__ = [
    "ENV_STARTED",
    "MAX_MARGIN_S",
    "MIN_MARGIN_S",
    "Deadline",
    "margin_s",
    "started_from",
    "wait_budget",
]
