"""Every command spanvisor prints for a person to paste works in the same shell.

After ``make demo`` the program is ``.venv/bin/spanvisor``, not on PATH;
``spanvisor approvals --url U`` answered with commands that lacked
``--url``. The real console script is run with PATH set as a newcomer's
shell would have it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spanvisor.cli.approvals import table
from spanvisor.cli.pasteable import with_name

SCRIPT = Path(sys.executable).with_name("spanvisor")
ANSWER = "spanvisor approve rivet-1 a1 --run r1 --digest d"


def _name_as_run(path_dirs: list[str], program: str) -> str:
    """command_name() in a process started as ``program`` with PATH ``path_dirs``."""
    code = "import sys; from spanvisor.cli.pasteable import command_name; print(command_name())"
    env = {**os.environ, "PATH": os.pathsep.join(path_dirs)}
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.argv[0] = {program!r}; {code}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_off_path_the_hint_names_the_program_as_it_was_started() -> None:
    assert _name_as_run(["/usr/bin", "/bin"], ".venv/bin/spanvisor") == ".venv/bin/spanvisor"


def test_on_path_the_hint_says_spanvisor() -> None:
    assert SCRIPT.exists()
    assert _name_as_run([str(SCRIPT.parent), "/usr/bin", "/bin"], str(SCRIPT)) == "spanvisor"


def test_a_url_given_as_a_flag_is_in_the_command_to_paste(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT)])
    monkeypatch.setenv("PATH", os.pathsep.join([str(SCRIPT.parent), "/usr/bin", "/bin"]))
    item = {"task_id": "rivet-1", "run_id": "r1", "approval_id": "a1", "question": "Apply?", "answer": ANSWER}
    shown = table([item], "http://10.0.0.5:4318")
    assert "  spanvisor approve --url http://10.0.0.5:4318 rivet-1 a1 --run r1 --digest d   (or: reject)" in shown
    assert with_name(ANSWER) == ANSWER  # no flag given: the environment applies to the pasted command too
