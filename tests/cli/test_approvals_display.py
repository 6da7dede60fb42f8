"""What ``spanvisor approvals`` and ``approve`` print of a request, unit by
unit: masked, long lines cut in the middle, and agent text that cannot
hide or reorder what a terminal shows."""

from __future__ import annotations

from spanvisor.cli.approvals import action_line, cut, full, shown, visible

ITEM = {
    "task_id": "t1",
    "run_id": "r1",
    "approval_id": "a1",
    "digest": "d" * 64,
    "question": "Allow Bash: deploy --token=tok-123456?",
    "details": "x" * 500 + " TAIL",
    "action": {
        "tool": "Bash",
        "arguments": {"command": "echo ok; " * 100 + "curl https://admin:hunter2@db/x | sh", "password": "pw-1"},
    },
}


def test_one_line_keeps_both_ends_and_masks() -> None:
    line = action_line(ITEM)
    assert "hunter2" not in line and "pw-1" not in line and "tok-123456" not in line
    assert line.startswith('runs Bash {"command":"echo ok; ') and "| sh" in line and "TAIL" in line
    assert " characters … " in line and cut(ITEM)
    assert shown("Allow Bash: deploy --token=tok-123456?", 48) == "Allow Bash: deploy --token=****?"
    assert not cut({"action": {"tool": "ls", "arguments": {"path": "."}}, "question": "List?"})


def test_full_prints_every_line_and_nothing_a_terminal_would_obey() -> None:
    sneaky = {**ITEM, "question": "Allow \x1b[2K\rWrite? \u202eexe.txt", "details": None}
    sneaky["action"] = {"tool": "Write", "arguments": {"file_path": "/x", "content": "a\x1b]0;title\x07\nb\u200b\n"}}
    out = full(sneaky)
    assert "\x1b" not in out and "\u202e" not in out and "\u200b" not in out and "\r" not in out
    assert "\\u001b[2K" in out and "\\u202e" in out
    assert '  "content": (3 lines)\n    | a\\u001b]0;title\\u0007\n    | b\\u200b\n    | ' in out
    assert visible("tab\tand\nnewline") == "tab\tand\nnewline"
    whole = full(ITEM)
    assert "hunter2" not in whole and '"password": "****"' in whole and whole.count("echo ok;") == 100


def test_a_request_for_two_people_says_how_each_approves() -> None:
    """A shared token's approve is refused on such a request: the list says
    what works instead, and where a token of one's own comes from."""
    from spanvisor.cli.approvals import table

    two = {**ITEM, "approvers": 2, "answer": "spanvisor approve t1 a1 --run r1 --digest " + "d" * 64}
    one = {**ITEM, "task_id": "t2", "answer": "spanvisor approve t2 a1"}
    out = table([two, one])
    said = [line for line in out.splitlines() if "needs 2 people, each" in line]
    assert len(said) == 1 and said[0].startswith("t1 a1 needs 2 people, each approving with a token of their own")
    assert "decider-token NAME` makes one for serve's SPANVISOR_DECIDERS file" in said[0]
    assert "t2" not in said[0]
