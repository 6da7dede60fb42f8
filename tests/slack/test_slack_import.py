"""Finding the sinks (what ``Config.load`` and ``serve`` do) imports no
slack_sdk: a process that does not post to Slack does not pay for it (about
9 MB of resident memory)."""

from __future__ import annotations

import subprocess
import sys

FIND_SINKS = """
import sys
from spanvisor.sink import available_sinks
assert "slack" in available_sinks()
assert "slack_sdk" not in sys.modules, sorted(m for m in sys.modules if m.startswith("slack_sdk"))[:5]
"""


def test_finding_the_sinks_imports_no_slack_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", FIND_SINKS], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
