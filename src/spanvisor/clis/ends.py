"""How a CLI's session ends without the launcher, as its hooks tell it:
the facts :mod:`spanvisor.hook.end` reads of each adapter
(:attr:`spanvisor.clis.adapter.Adapter.ends`), each checked with the
pinned CLI (the adapters' docstrings say what it fires and when)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Claude Code's hook names, which most CLIs took.
CLAUDE_TURNS: Mapping[str, str] = MappingProxyType(
    {"UserPromptSubmit": "open", "Stop": "complete", "StopFailure": "error", "Interrupt": "cancelled"}
)


class SessionEnds:
    """A CLI's facts, given as keywords; read-only by convention. A plain
    class: it is imported on the gate's path, where a dataclass or a
    NamedTuple would cost every hook call a millisecond or more."""

    __slots__ = (
        "error_reasons",
        "first_final",
        "headless_last",
        "names_turn",
        "no_prompt_completes",
        "open_turn",
        "stopped_by",
        "tries",
        "turn_error",
        "turns",
        "waits_for_exit",
    )

    def __init__(
        self,
        *,
        turns: Mapping[str, str] = CLAUDE_TURNS,
        turn_error: str = "the turn ended on an API error",
        names_turn: bool = False,
        open_turn: tuple[str, str] = ("cancelled", "ended before its turn finished (interrupted or signalled)"),
        no_prompt_completes: bool = False,
        error_reasons: frozenset[str] = frozenset(),
        stopped_by: Mapping[str, str] = MappingProxyType({}),
        first_final: bool = False,
        tries: int = 1,
        waits_for_exit: bool = True,
        headless_last: str | None = None,
    ) -> None:
        # Each turn event it fires, and the state of the turn it says: open,
        # complete, error or cancelled.
        self.turns = MappingProxyType(dict(turns))
        # What an error turn says when its event gives no message.
        self.turn_error = turn_error
        # Its end event names the turn it ended (Claude Code's prompt_id): a
        # turn heard of for another prompt says nothing of it.
        self.names_turn = names_turn
        # An end with its turn still open: (status, what follows the CLI's name).
        self.open_turn = open_turn
        # An end with no turn heard of and none named is complete (Claude
        # Code given nothing to run).
        self.no_prompt_completes = no_prompt_completes
        # The end's reasons that say it ended on an error (Copilot CLI's).
        self.error_reasons = error_reasons
        # End events that say its run stopped before its task finished, and
        # how (after the CLI's name).
        self.stopped_by = MappingProxyType(dict(stopped_by))
        # The first end heard is its end: a later end hook of the session
        # says nothing (Cline's SessionShutdown after its TaskComplete).
        self.first_final = first_final
        # Tries of an end the receiver did not take (an end hook run
        # detached, whose CLI exits at once: no later hook delivers a
        # spooled end).
        self.tries = tries
        # The end waits for the CLI to exit, after its own last records
        # (False: its end comes as it shuts down, nothing to wait for).
        self.waits_for_exit = waits_for_exit
        # With a prompt (``-p``), the event that is its session's last (it
        # fires no end event): the session ends once the CLI exits.
        self.headless_last = headless_last


__all__ = ["CLAUDE_TURNS", "SessionEnds"]
