"""What a fake model answers: scripted turns, the same for the three APIs.

A run's script is a list of turns; the fake picks the turn by how many
model turns the request's conversation already holds, so a retried request
gets the same answer (an error stays an error) and nothing depends on
timing or on which connection a request came on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 1_000  # fresh input, as each API counts it
    output_tokens: int = 50
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True)
class Turn:
    kind: Literal["tool", "text", "error"]
    usage: Usage = field(default_factory=Usage)
    tool: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    status: int = 0  # for an error: the HTTP status
    error_type: str = ""
    # Seconds the fake holds its answer back: a session kept busy on the
    # model (a test stops it meanwhile).
    hold_s: float = 0.0


def tool(name: str, usage: Usage | None = None, **args: Any) -> Turn:
    return Turn("tool", usage or Usage(), tool=name, args=dict(args))


def text(said: str, usage: Usage | None = None) -> Turn:
    return Turn("text", usage or Usage(), text=said)


def held(turn: Turn, seconds: float) -> Turn:
    """``turn``, answered only after ``seconds`` (the CLI waits on its model)."""
    return replace(turn, hold_s=seconds)


def error(status: int, error_type: str, message: str) -> Turn:
    return Turn("error", Usage(0, 0), text=message, status=status, error_type=error_type)


@dataclass
class Script:
    turns: list[Turn]

    def turn(self, done: int) -> Turn:
        """The answer after ``done`` model turns: the last turn repeats (a
        CLI that asks once more gets the final answer again)."""
        return self.turns[min(done, len(self.turns) - 1)]
