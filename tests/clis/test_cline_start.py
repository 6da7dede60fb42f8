"""Cline's ``TaskStart`` carries no prompt: the task is named from the
session manifest Cline wrote before it (``<CLINE_DIR or ~/.cline>/data/
sessions/<rootSessionId>/<rootSessionId>.json``, its ``prompt``), read
only under that folder, bounded, and never from a path the input could
steer elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanvisor.clis.cline import MAX_MANIFEST, first_prompt
from spanvisor.gate import contracts as gc


def _manifest(home: Path, root: str, doc: object) -> None:
    folder = home / ".cline" / "data" / "sessions" / root
    folder.mkdir(parents=True)
    (folder / f"{root}.json").write_text(json.dumps(doc))


def _start(root: object) -> dict[str, object]:
    return {"hookName": "agent_start", "taskId": "conv_1", "sessionContext": {"rootSessionId": root}}


def test_the_prompt_is_read_from_the_manifest_cline_wrote(tmp_path: Path) -> None:
    _manifest(tmp_path, "1784", {"prompt": "fix the flaky login test", "status": "running"})
    env = {"HOME": str(tmp_path)}
    assert first_prompt(_start("1784"), env) == "fix the flaky login test"
    assert first_prompt(_start("1784"), {"CLINE_DIR": str(tmp_path / ".cline")}) == "fix the flaky login test"


@pytest.mark.parametrize("root", [None, 7, "", ".", "..", "../1784", "a/b", "a\\b", "a\0b", "missing"])
def test_no_manifest_or_an_id_that_is_no_file_name_names_nothing(tmp_path: Path, root: object) -> None:
    _manifest(tmp_path, "1784", {"prompt": "fix it"})
    assert first_prompt(_start(root), {"HOME": str(tmp_path)}) is None


def test_a_manifest_that_is_not_one_names_nothing(tmp_path: Path) -> None:
    for i, doc in enumerate(([], {"prompt": 3}, {"prompt": "  "}, {"other": "x"})):
        _manifest(tmp_path, f"r{i}", doc)
        assert first_prompt(_start(f"r{i}"), {"HOME": str(tmp_path)}) is None
    folder = tmp_path / ".cline" / "data" / "sessions" / "big"
    folder.mkdir(parents=True)
    (folder / "big.json").write_text('{"prompt": "' + "x" * MAX_MANIFEST + '"}')
    assert first_prompt(_start("big"), {"HOME": str(tmp_path)}) is None  # cut at the bound: no JSON


def test_taskstart_is_a_session_event_that_opens_a_turn_never_an_end() -> None:
    from spanvisor.hook.end import turn_of

    ev = gc.session_event("cline", json.dumps(_start("none")))
    assert ev is not None and ev.event == "TaskStart" and not gc.ends_session("cline", "TaskStart")
    turn = turn_of(ev)
    assert turn is not None and turn.state == "open"
