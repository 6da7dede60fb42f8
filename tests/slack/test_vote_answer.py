"""The private answer to a click on a request several people must approve:
a vote is said to be one, never "Approved" while the agent still waits."""

from __future__ import annotations

from spanvisor.control.hub import Verdict
from spanvisor.events import Decision
from spanvisor_slack.intake import answer_text
from spanvisor_slack.interact import Click, Where

CLICK = Click(Decision("iv-1", "T1", "approve", "U0BOB", 1, approval_id="a1", source="slack"), Where("U0BOB"))


def test_a_vote_short_of_the_count_says_how_many_more() -> None:
    text = answer_text(Verdict("applied", votes=1, votes_needed=3), CLICK)
    assert text is not None and "1 of 3" in text and "2 more people" in text and "Approved" not in text
    assert "1 more person" in (answer_text(Verdict("applied", votes=1, votes_needed=2), CLICK) or "")


def test_the_approval_that_completes_the_count_is_an_approval() -> None:
    assert "Approved" in (answer_text(Verdict("applied", votes=2, votes_needed=2), CLICK) or "")
    assert "Approved" in (answer_text(Verdict("applied"), CLICK) or "")
