"""The ``spanvisor`` console script.

``spanvisor hook …`` answers a coding agent's every tool call, so it goes
straight to the gate (:func:`spanvisor.cli.hook.main`): no configuration,
logging or plugin loading before the answer, and whatever fails on the
way, the answer is the CLI's block (exit status 2), never a traceback's
exit 1, which the CLIs read as "not blocked". Every other command goes to
:func:`spanvisor.cli.main.main`.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] != ["hook"]:
        from spanvisor.cli.main import main as full

        return full()
    try:
        from spanvisor.cli.hook import main as hook

        code = hook(argv[1:])
    except BaseException as exc:  # the gate itself could not be imported
        print(f"spanvisor hook failed to start ({type(exc).__name__}); denied", file=sys.stderr)
        code = 2
    try:
        sys.stdout.flush()
    except BaseException:
        code = 2 if code else code
    # Exit at once: nothing left to run, and a stdout closed under us must
    # not turn the status into 120 at the interpreter's exit.
    os._exit(code)


__all__ = ["main"]
