"""A flush barrier: put into every sink worker's queue, passed in order."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("spanvisor.pipeline")


@dataclass
class Barrier:
    """Fires ``callback(ok)`` once ``count`` workers have passed it."""

    count: int
    callback: Callable[[bool], None]
    ok: bool = True

    def reached(self, ok: bool = True) -> None:
        self.ok = self.ok and ok
        self.count -= 1
        if self.count == 0:
            try:
                self.callback(self.ok)
            except Exception:
                log.exception("barrier callback failed")
