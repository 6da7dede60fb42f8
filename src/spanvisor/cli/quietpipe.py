"""Standard output that survives its reader leaving: ``spanvisor demo | head``.

When the reader of a pipe exits, the next write raises ``BrokenPipeError``.
In the demo that came from an agent's print, so the agent's task was
recorded as failed with "[Errno 32] Broken pipe", and the demo ended in a
traceback. What the demo prints is only its screen: once nobody reads it,
writes go nowhere (the file descriptor too, so the interpreter's last flush
at exit is quiet), and the agents and sinks go on.
"""

from __future__ import annotations

import os
from typing import Any, TextIO


class QuietPipe:
    """Wraps a text stream; after a broken pipe every write is dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._leave()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._leave()

    def _leave(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no file descriptor to point elsewhere
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


__all__ = ["QuietPipe"]
