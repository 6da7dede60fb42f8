"""The gate's one answer (spanvisor.gate.answer.Answer) and its release.

The hook decides in a child process and tells its waiting parent the
answer once it is written (the release). A signal raised between the two
(the hook's backstop is a SIGALRM, raised in whatever runs then) left the
parent unreleased: it heard nothing and wrote a block after the allow the
CLI already had (two answers on stdout; seen in CI under load as
test_deadline's allow turned deny). The release is tried again when cut
short, and the child releases once more with the standing answer on its
way out; a parent is told once.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from spanvisor.gate.answer import Answer


class Cut(Exception):
    """What the backstop's SIGALRM raises in the hook (its Late)."""


def test_a_release_cut_short_is_tried_again_with_the_answer_that_stands() -> None:
    told: list[int] = []
    calls = 0

    def release(code: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Cut  # the signal, mid-release
        told.append(code)

    out = io.StringIO()
    answer = Answer("gemini", out, io.StringIO(), release)
    assert answer.allow("allowed by policy:ls") == 0
    assert told == [0]
    # The backstop's block, caught after the answer: nothing changes, nothing more is told.
    assert answer.block("no answer before the CLI's hook timeout; denied") == 0
    assert told == [0]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["decision"] == "allow"


# The child: tells its parent, then the released descriptor's number comes
# to name something of its own (a note's connection, say), then its last
# release on its way out must write nothing there. Exit 1 if it did.
CHILD = """
import os, sys
from spanvisor.cli.entry import _releaser
fd = int(sys.argv[1])
release = _releaser(fd)
release(0)
mine, theirs = os.pipe()
os.dup2(theirs, fd)
release(2)
os.set_blocking(mine, False)
try:
    got = os.read(mine, 16)
except BlockingIOError:
    got = b""
sys.exit(1 if got else 0)
"""


def test_the_child_tells_its_parent_once_whatever_calls_it_again() -> None:
    # In a process of its own, as the hook's child: a release leaves its
    # streams and its session (setsid), which this test's process must not.
    readable, writable = os.pipe()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(writable),
            ],
            pass_fds=(writable,),
            timeout=60,
            check=False,
        )
        os.close(writable)
        assert done.returncode == 0
        assert os.read(readable, 16) == bytes([0])  # told once, the answer that stands
    finally:
        os.close(readable)
