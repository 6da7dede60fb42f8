"""When the gate must have answered: before the CLI gives up on its hook.

Every CLI kills a hook that runs past its hook timeout, and what it does
then is the CLI's choice (Gemini CLI runs the call). So the gate works
against one deadline, taken from the CLI's hook timeout (``--cli-timeout``,
else that CLI's documented default) less a margin for the answer to be
read: asking a person, waiting, checking the approval and anything else
end by it, and the policy's ``on_timeout`` answers in time.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from spanvisor.gate.contracts import Cli

# Each CLI's hook timeout when its settings give none, in seconds: Claude
# Code's command hooks 600, Gemini CLI's 60 (its setting is in ms). Codex
# documents none for command hooks; 600, as Claude Code, whose hook
# contract it follows.
CLI_TIMEOUT_DEFAULT: dict[str, float] = {"claude-code": 600.0, "codex": 600.0, "gemini": 60.0}
# Room left before the CLI's limit for the answer to be read, and for this
# process's own start, which the deadline does not see.
MIN_MARGIN_S, MAX_MARGIN_S = 2.0, 10.0


def margin_s(cli_timeout: float) -> float:
    return min(MAX_MARGIN_S, max(MIN_MARGIN_S, 0.15 * cli_timeout))


class Deadline(NamedTuple):
    """The monotonic time by which the answer must be written."""

    at: float
    cli_timeout: float

    @classmethod
    def for_cli(cls, cli: Cli, given: float | None, started: float | None = None) -> Deadline:
        limit = given if given is not None and given > 0 and math.isfinite(given) else CLI_TIMEOUT_DEFAULT[cli]
        t0 = time.monotonic() if started is None else started
        return cls(t0 + max(0.0, limit - margin_s(limit)), limit)

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())


def wait_budget(timeout_s: float, deadline: Deadline) -> float:
    """How long a person has: the policy's timeout, cut short by the
    deadline (whole seconds, as people read them); 0 when there is no time
    left to ask."""
    return float(min(timeout_s, max(0, math.floor(deadline.left()))))


__all__ = ["CLI_TIMEOUT_DEFAULT", "MAX_MARGIN_S", "MIN_MARGIN_S", "Deadline", "margin_s", "wait_budget"]
