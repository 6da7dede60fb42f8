"""``spanvisor hook`` at a CLI's ``Notification``: the session's task shows
as waiting while the CLI asks the person at its terminal.

Answered at once with the neutral reply (``{}``, exit status 0: a
notification decides nothing), released, and only then the note is made
(the transcript read for the call it asks about) and sent the way the
gate's audit notes are (:mod:`spanvisor.gate.notes`). Whatever fails after
the answer costs the note only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

from spanvisor.gate import notes, notices
from spanvisor.gate.answer import Answer


def answer(n: notices.Notice, args: argparse.Namespace, out: Answer, env: Mapping[str, str]) -> int:
    """The neutral reply, then the waiting note (for a permission prompt)."""
    at = time.time_ns()
    code = out.neutral({})
    try:
        item = notices.waiting_note(n, getattr(args, "endpoint", None), env, at)
        notes.keep(item, getattr(args, "otlp_token", None), env, released=out.release is not None, later=out.later)
    except Exception:  # the reply is out and neutral: the note is best effort
        pass
    return code


__all__ = ["answer"]
