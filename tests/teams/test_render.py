"""What a task looks like in Teams: its card shows every question with its
buttons (carrying only a token), agent text literally (no Markdown, no date
functions, nothing a TextBlock would parse), and stays within MAX_CARD
whatever the agent sends, cutting the lowest parts first and saying so."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.chat.buttons import TOKEN_CHARS, Button, buttons
from spanvisor.chat.record import FOLD_MAX
from spanvisor.display.thread import ThreadLine
from spanvisor.events import ApprovalRequest, TaskView
from spanvisor_teams import render as r
from tests.taskscript import TaskScript

CHAT = "19:agents@thread.tacv2"
EVIL = "[click](https://evil.example) **Approved** {{DATE(2017-02-14T06:00:00Z, SHORT)}} {{TIME(2017-02-14T06:00:00Z)}}"

# What each element may hold (Adaptive Cards 1.5 schema, Teams' msteams.width), and the values we use.
KEYS: dict[str, set[str]] = {
    "AdaptiveCard": {"type", "$schema", "version", "body", "msteams"},
    "RichTextBlock": {"type", "inlines"},
    "TextRun": {"type", "text", "weight", "italic", "isSubtle", "fontType", "size"},
    "Container": {"type", "items", "style"},
    "ActionSet": {"type", "actions"},
    "Input.Text": {"type", "id", "placeholder", "maxLength"},
    "Action.Execute": {"type", "title", "verb", "data", "fallback", "style"},
    "Action.Submit": {"type", "title", "data", "style"},
}
VALUES: dict[str, set[Any]] = {
    "weight": {"bolder"},
    "fontType": {"monospace"},
    "size": {"medium"},
    "italic": {True},
    "isSubtle": {True},
}
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def check_card(card: dict[str, Any]) -> None:
    """A card Teams renders: version 1.5, only the elements and properties we
    know, every TextRun with text, every button an Action.Execute with the
    same data in an Action.Submit fallback, and under MAX_CARD however counted."""
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["msteams"] == {"width": "Full"}
    assert isinstance(card["body"], list)
    _check(card)
    raw = json.dumps(card, ensure_ascii=False)
    assert json.loads(raw) == card
    assert len(raw.encode("utf-8")) <= r.MAX_CARD  # strict UTF-8: no lone surrogate in it
    assert len(raw.encode("utf-16-le")) // 2 <= r.MAX_CARD
    assert len(json.dumps(card)) <= r.MAX_CARD  # as aiohttp's json= sends it
    assert r.size(card) <= r.MAX_CARD


def _check(element: dict[str, Any]) -> None:
    kind = element["type"]
    assert kind in KEYS, kind
    assert set(element) <= KEYS[kind], (kind, set(element) - KEYS[kind])
    for key, allowed in VALUES.items():
        if key in element and kind == "TextRun":
            assert element[key] in allowed, (key, element[key])
    if kind == "TextRun":
        assert isinstance(element["text"], str) and element["text"]
        assert "{{" not in element["text"] and not CONTROL.search(element["text"])
    elif kind == "RichTextBlock":
        assert element["inlines"]
        for inline in element["inlines"]:
            assert inline["type"] == "TextRun"
            _check(inline)
    elif kind in ("AdaptiveCard", "Container"):
        for item in element["body" if kind == "AdaptiveCard" else "items"]:
            assert item["type"] in ("RichTextBlock", "Container", "ActionSet", "Input.Text"), item["type"]
            _check(item)
        if kind == "Container":
            assert element["style"] in ("emphasis", "attention")
    elif kind == "Input.Text":
        assert element["id"].startswith("comment-") and element["maxLength"] == r.MAX_COMMENT
    elif kind == "ActionSet":
        assert 1 <= len(element["actions"]) <= 3
        for action in element["actions"]:
            assert action["type"] == "Action.Execute"
            _check(action)
    elif kind == "Action.Execute":
        assert element["verb"] in ("spanvisor.approve", "spanvisor.reject", "spanvisor.show")
        assert set(element["data"]) == {"sv"} and len(element["data"]["sv"]) == TOKEN_CHARS
        fallback = element["fallback"]
        assert fallback["type"] == "Action.Submit"
        assert fallback["data"] == element["data"] and fallback["title"] == element["title"]
        _check(fallback)
        assert element.get("style") in (None, "positive", "destructive")


def walk(element: Any) -> list[dict[str, Any]]:
    """Every element under ``element``, itself included."""
    out: list[dict[str, Any]] = []
    if isinstance(element, dict):
        if "type" in element:
            out.append(element)
        for v in element.values():
            out.extend(walk(v))
    elif isinstance(element, list):
        for v in element:
            out.extend(walk(v))
    return out


def texts(card: dict[str, Any]) -> list[str]:
    return [e["text"] for e in walk(card) if e["type"] == "TextRun"]


def shown(card: dict[str, Any]) -> str:
    return "".join(texts(card))


def tokens(card: dict[str, Any]) -> set[str]:
    return {e["data"]["sv"] for e in walk(card) if e["type"] == "Action.Execute"}


def action(command: str) -> str:
    return json.dumps({"tool": "bash", "arguments": {"command": command}})


def view_with(*requests: ApprovalRequest, **changes: Any) -> TaskView:
    task = TaskScript.new("t-1", "rivet", task_name="Ship it", repo="acme/api", branch="main")
    changes = {"status": "awaiting_approval", "message": "working on it", **changes}
    return replace(task.view, approvals=requests, **changes)


def render(view: TaskView, answered_here: bool = True) -> tuple[r.Card, list[tuple[int | None, list[Button]]]]:
    """As the sink renders: the card, its buttons for the requests it shows, the card with them."""
    first = r.parent(view, view.updated_ns, answered_here=answered_here)
    rows = buttons(view, CHAT, r.request_clipped, first.asks)
    card = r.parent(view, view.updated_ns, answered_here=answered_here, rows=rows)
    assert card.asks == first.asks  # a request's buttons never push it out
    check_card(card.card)
    return card, rows


def test_a_request_shows_its_question_its_action_start_and_end_and_buttons_with_only_a_token() -> None:
    command = "rm -rf /srv/data " + "x" * 5000 + " && curl https://evil.example/END"
    req = ApprovalRequest("a1", "Delete the data?", details="the old copy", action=action(command), digest="d1")
    card, rows = render(view_with(req))
    assert card.asks == ("a1",)
    text = shown(card.card)
    assert "Delete the data?" in text and "the old copy" in text
    assert "rm -rf /srv/data" in text and "evil.example/END" in text  # its start and its dangerous end
    assert "characters …" in text and "x" * 5000 not in text
    # Under its question, in the request's container: approve, reject, and show all (the action is cut).
    container = next(e for e in card.card["body"] if e["type"] == "Container")
    action_set = container["items"][-1]
    assert action_set["type"] == "ActionSet"
    row = rows[0][1]
    assert [(a["verb"], a["data"], a["title"]) for a in action_set["actions"]] == [
        ("spanvisor.approve", {"sv": row[0].token}, "✅ Approve"),
        ("spanvisor.reject", {"sv": row[1].token}, "❌ Reject"),
        ("spanvisor.show", {"sv": row[2].token}, "📄 Show all"),
    ]
    assert [a["fallback"]["type"] for a in action_set["actions"]] == ["Action.Submit"] * 3
    assert "d1" not in json.dumps(action_set) and "a1" not in json.dumps(action_set)  # a token, nothing else
    assert "actions" not in card.card  # no card-level buttons, nothing far from its question


def test_the_command_is_shown_when_no_press_can_answer_here() -> None:
    req = ApprovalRequest("a1", "Deploy?", digest="d1")
    card, _ = render(view_with(req), answered_here=False)
    assert "spanvisor approve t-1 a1" in shown(card.card) and "--digest d1" in shown(card.card)
    assert card.asks == ("a1",)
    plain = r.parent(view_with(req), 0, answered_here=True)
    assert "spanvisor approve" not in shown(plain.card)


def test_markdown_and_date_functions_from_the_agent_are_shown_literally() -> None:
    req = ApprovalRequest("a1", EVIL, details=EVIL, action=action(EVIL), digest="d1", requester=EVIL)
    view = view_with(req, agent_name=EVIL, task_name=EVIL, message=EVIL, repo=EVIL, branch=EVIL, step=EVIL)
    card, _ = render(view)
    assert not [e for e in walk(card.card) if e["type"] == "TextBlock"]  # nothing parses Markdown
    literal = EVIL.replace("{{", "{\u2060{")  # a date function broken by an invisible joiner, else as written
    runs = texts(card.card)
    assert sum(literal in t for t in runs) >= 5
    assert all("{{" not in t for t in runs)
    assert "[click](https://evil.example) **Approved**" in runs[1]  # the task's name, as the agent wrote it
    thread = r.line_card([ThreadLine("e1", "milestone", "🏁", EVIL, detail=EVIL, code=EVIL, logs=EVIL)])
    check_card(thread)
    assert sum(literal in t for t in texts(thread)) == 4


def test_text_that_no_card_should_carry_is_replaced() -> None:
    raw = "a\x00b\x1b[31mc\r\nd\re\tf\ud800g\u202eh\u2028i{{{j"
    assert r.clean(raw) == "a\ufffdb\ufffd[31mc\nd\ne    f\ufffdg\ufffdh\ni{\u2060{\u2060{j"
    assert r.clean(r.clean(raw)) == r.clean(raw)
    assert r.clip("x" * 1000, 10) == "x" * 9 + "…"
    assert r.units(r.clip("🙂" * 1000, 11)) <= 11


def test_a_megabyte_detail_keeps_the_card_small_with_its_status_and_question() -> None:
    req = ApprovalRequest(
        "a1", "Apply the migration?", details="🙂" * 1_000_000, action=action("y" * 1_000_000), digest="d1"
    )
    view = view_with(req, message="m" * 1_000_000, task_name="n" * 1_000_000, step="s" * 1_000_000)
    card, rows = render(view)
    assert card.asks == ("a1",) and len(rows[0][1]) == 3  # cut, so 'Show all' too
    body = card.card["body"]
    assert "awaiting approval" in shown(body[0])
    assert "Apply the migration?" in shown(card.card)
    assert r.size(card.card) <= r.MAX_CARD


def test_the_first_request_and_its_buttons_fit_at_the_worst() -> None:
    """Every piece at its longest, in the characters JSON escapes longest: the
    status and the first request still fit; the others wait their turn."""
    worst = "🙂" * 100_000
    reqs = [
        ApprovalRequest(
            f"a{i}",
            worst,
            details=worst,
            action=action(worst),
            digest="d" * 64,
            requester=worst,
            approvers=2,
            approvers_from=("group:" + worst,),
            policy_version=worst,
            required_by="central:" + worst,
        )
        for i in range(5)
    ]
    view = view_with(
        *reqs,
        task_id="\U0001f642" * 150,
        agent_name=worst,
        task_name=worst,
        message=worst,
        repo=worst,
        branch=worst,
        step=worst,
        cancel_requested=True,
    )
    for here in (True, False):
        card, rows = render(view, answered_here=here)
        assert card.asks[:1] == ("a0",) and rows
        text = shown(card.card)
        assert "more waiting" in text and "not shown, to fit" in text


def test_many_requests_say_more_are_waiting() -> None:
    reqs = [ApprovalRequest(f"a{i}", f"Question {i}?", digest=f"d{i}") for i in range(5)]
    card, rows = render(view_with(*reqs))
    assert card.asks == ("a0", "a1", "a2")
    text = shown(card.card)
    assert "Question 2?" in text and "Question 3?" not in text
    assert "… more waiting: spanvisor approvals lists them all" in text
    titles = [a["title"] for e in walk(card.card) if e["type"] == "ActionSet" for a in e["actions"]]
    assert titles == ["✅ Approve 1", "❌ Reject 1", "✅ Approve 2", "❌ Reject 2", "✅ Approve 3", "❌ Reject 3"]
    assert [n for n, _ in rows] == [1, 2, 3]
    # Each question's buttons are in its own container, right under it.
    for n, container in enumerate((e for e in card.card["body"] if e["type"] == "Container"), 1):
        assert f"Approval needed {n}: " in shown(container["items"][0])
        assert container["items"][-1]["type"] == "ActionSet"


def test_a_denied_request_is_shown_without_buttons() -> None:
    denied = ApprovalRequest(
        "a1", "Drop prod?", digest="d1", policy_version="acme@1", required_by="central:no-drop", policy_denied="no"
    )
    card, rows = render(view_with(denied, ApprovalRequest("a2", "Fine?", digest="d2")))
    assert card.asks == ("a2",) and [n for n, _ in rows] == [2]
    text = shown(card.card)
    assert "⛔ Denied 1: Drop prod?" in text and "nobody may approve it" in text
    assert "more waiting" not in text


def test_a_card_over_the_limit_drops_its_lowest_parts_first_and_says_so() -> None:
    reqs = [
        ApprovalRequest(f"a{i}", "q" * 300, details="中" * 300, action=action("中" * 700), digest="d") for i in range(3)
    ]
    view = view_with(*reqs, message="中" * 300, step="a step", steps=("a step",), cost_usd=1.5)
    card, _ = render(view)
    text = shown(card.card)
    assert card.asks == ("a0", "a1", "a2")  # every question, and what is left of the rest
    # The lowest parts went, in order, and no more than needed: where and progress stay.
    assert "中" * 10 + "…" not in text and "… not shown, to fit: last message" in text
    assert "acme/api · main" in text and "▱" in text and "where" not in text.rpartition("to fit:")[2]
    # Bigger still: requests go only when all the rest has gone, the last first.
    reqs = [replace(req, action=action("中" * 800)) for req in reqs]
    card, _ = render(replace(view, approvals=tuple(reqs)))
    assert card.asks == ("a0", "a1")
    text = shown(card.card)
    assert "more waiting" in text and "not shown, to fit: last message, cost, steps, where, progress" in text


def test_thread_lines_keep_a_stack_traces_end_and_fold_within_a_card() -> None:
    trace = "Traceback (most recent call last):\n" + "  frame\n" * 2000 + "ValueError: the end"
    item = ThreadLine("e1", "error", "❌", "Failed", detail="d" * 10_000, code=trace, logs="log\n" * 5000)
    card = r.line_card([item])
    check_card(card)
    runs = [e for e in walk(card) if e["type"] == "TextRun"]
    assert runs[1] == {"type": "TextRun", "text": "Failed", "weight": "bolder"}
    code = next(x for x in runs if x.get("fontType") == "monospace")
    assert code["text"].startswith("…") and code["text"].endswith("ValueError: the end")
    # Ten lines at most in a reply, all whole; a line that is not progress gets its own.
    steps = [ThreadLine(f"s{i}", "step", "▶", f"step {i}", detail="x" * 500) for i in range(15)]
    batch = r.next_batch(steps)
    assert batch == steps[:FOLD_MAX]
    assert r.next_batch([item, *steps]) == [item]
    assert r.next_batch([steps[0], item]) == [steps[0]]
    # Big ones fold as far as one card holds them whole.
    big = [ThreadLine(f"b{i}", "tool", "🔧", f"tool {i}", detail="🙂" * 1500, logs="🙂" * 1500) for i in range(10)]
    batch = r.next_batch(big)
    assert 1 <= len(batch) < 10
    whole = r.line_card(batch)
    check_card(whole)
    assert whole["body"][-1] != r.CUT
    over = r.line_card(big)
    check_card(over)
    assert over["body"][-1] == r.CUT


def test_show_all_gives_the_whole_request_in_four_cards_at_most() -> None:
    short = ApprovalRequest("a1", "Deploy?", details="to prod", action=action("make deploy"))
    (one,) = r.whole_pieces(short)
    check_card(one)
    assert shown(one).startswith("📄 Request 1 of 1") and r.whole_request(short) in shown(one)
    huge = ApprovalRequest("a1", "Deploy?", action=action("🙂" * 1_000_000))
    cards = r.whole_pieces(huge)
    assert len(cards) == 4
    for card in cards:
        check_card(card)
    assert "of about" in shown(cards[0])
    assert shown(cards[-1]).endswith("… the rest: spanvisor approvals --full")
    pieces = "".join(texts(c)[1] for c in cards)
    assert r.clean(r.whole_request(huge)).startswith(pieces)


def test_an_activity_carries_the_card_and_a_short_plain_summary() -> None:
    card, _ = render(view_with(ApprovalRequest("a1", "Deploy?", digest="d1")))
    said = r.activity(card.card, r.summary(view_with()) + "\n" + "z" * 500)
    assert said["type"] == "message"
    assert said["attachments"] == [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card.card}]
    assert len(said["summary"]) <= 200 and "\n" not in said["summary"]
    assert said["summary"].startswith("✋ rivet · awaiting approval · Ship it")


# -- properties ---------------------------------------------------------------

NASTY = st.sampled_from(
    [
        *("{", "}", "{{", "[x](https://e)", "**", "\ud800", "\udfff", "\x00", "\x1b", "\r\n", "\t", "\u202e"),
        *("\u2028", '"', "\\", "é", "🙂", "中", "\n", "{{DATE(2017-02-14T06:00:00Z)}}", "…"),
    ]
)
TEXT = st.lists(st.one_of(NASTY, st.text(max_size=6)), max_size=10).map("".join)
# Now and then long: past a piece's room, an action's, a card's.
BIG = st.one_of(TEXT, st.builds(lambda s, k: ((s or "x") * k)[:k], TEXT, st.sampled_from([299, 301, 2_000, 60_000])))
ACTION = st.one_of(st.none(), BIG, BIG.map(action))


@st.composite
def requests(draw: st.DrawFn) -> tuple[ApprovalRequest, ...]:
    out = []
    for i in range(draw(st.integers(0, 5))):
        out.append(
            ApprovalRequest(
                approval_id=f"r{i}" + draw(TEXT),
                question=draw(BIG),
                details=draw(st.one_of(st.none(), BIG)),
                action=draw(ACTION),
                digest=draw(st.sampled_from(["", "d" * 64])),
                options=draw(st.sampled_from([("approve", "reject"), ("approve",), ()])),
                approvers=draw(st.integers(1, 3)),
                requester=draw(st.one_of(st.none(), TEXT)),
                approvers_from=tuple(draw(st.lists(TEXT, max_size=3))),
                policy_version=draw(st.one_of(st.none(), TEXT)),
                required_by=draw(st.sampled_from([None, "request", "central:rule"])),
                policy_denied=draw(st.one_of(st.none(), st.none(), TEXT)),
            )
        )
    return tuple(out)


@st.composite
def views(draw: st.DrawFn) -> TaskView:
    task = TaskScript.new("t", "rivet")
    return replace(
        task.view,
        task_id=draw(TEXT) or "t",
        run_id=draw(TEXT),
        agent_id=draw(TEXT),
        agent_name=draw(st.one_of(st.none(), BIG)),
        task_name=draw(st.one_of(st.none(), BIG)),
        repo=draw(st.one_of(st.none(), BIG)),
        branch=draw(st.one_of(st.none(), BIG)),
        status=draw(st.sampled_from(["working", "awaiting_approval", "complete", "error", "bogus"])),
        stalled=draw(st.booleans()),
        progress=draw(st.one_of(st.none(), st.floats(-10, 200))),
        steps=tuple(draw(st.lists(BIG, max_size=4))),
        step=draw(st.one_of(st.none(), BIG)),
        message=draw(st.one_of(st.none(), BIG)),
        context_tokens=draw(st.one_of(st.none(), st.integers(0, 10**9))),
        context_limit=draw(st.one_of(st.none(), st.integers(0, 10**9))),
        cost_usd=draw(st.floats(0, 1e9)),
        unpriced_calls=draw(st.integers(0, 5)),
        cancel_requested=draw(st.booleans()),
        ended_ns=draw(st.one_of(st.none(), st.just(task.view.started_ns + 5 * 10**9))),
        approvals=draw(requests()),
    )


@settings(max_examples=150)
@given(view=views(), answered_here=st.booleans())
def test_any_task_gives_a_valid_card_within_the_limit_with_buttons_only_under_questions_shown(
    view: TaskView, answered_here: bool
) -> None:
    card, rows = render(view, answered_here)  # valid, within MAX_CARD, its asks whatever its buttons
    assert not [e for e in walk(card.card) if e["type"] == "TextBlock"]
    body = card.card["body"]
    assert r.clip(view.agent_name or view.agent_id, r.NAME_ROOM) in shown(body[0])  # the status line, always
    # The requests shown are the first ones, in order, each in its container
    # with its question first; those a person may answer are the card's asks.
    containers = [e for e in body if e["type"] == "Container"]
    if view.approvals:
        assert containers  # the first request always fits
    shown_requests = view.approvals[: len(containers)]
    assert card.asks == tuple(req.approval_id for req in shown_requests if not req.policy_denied)
    for req, container in zip(shown_requests, containers, strict=True):
        first = texts(container["items"][0])
        assert first[0].startswith("⛔ Denied" if req.policy_denied else "✋ Approval needed")
        question = r.clip(req.question)
        assert first[1:] == ([question] if question else [])
        # Its buttons sit in its container, and only there.
        own = {b.token for _, row in rows for b in row if b.approval_id == req.approval_id}
        assert tokens(container) == own
    assert tokens(card.card) == {b.token for _, row in rows for b in row}
    assert {b.approval_id for _, row in rows for b in row} <= set(card.asks)
    assert ("more waiting" in shown(card.card)) == (len(containers) < len(view.approvals))


LINES = st.builds(
    ThreadLine,
    event_id=st.just("e"),
    kind=st.sampled_from(["step", "tool", "milestone", "error", "summary", "approval"]),
    emoji=st.sampled_from(["▶", "🔧", "❌", "✅"]),
    summary=BIG,
    detail=st.one_of(st.none(), BIG),
    code=st.one_of(st.none(), BIG),
    logs=st.one_of(st.none(), BIG),
)


@settings(max_examples=60)
@given(lines=st.lists(LINES, min_size=1, max_size=12))
def test_any_thread_lines_fold_into_valid_cards_within_the_limit(lines: list[ThreadLine]) -> None:
    check_card(r.line_card(lines))
    batch = r.next_batch(lines)
    assert batch == lines[: len(batch)] and 1 <= len(batch) <= FOLD_MAX
    card = r.line_card(batch)
    check_card(card)
    assert len(batch) == 1 or card["body"][-1] != r.CUT  # a fold is never cut


@settings(max_examples=40)
@given(question=BIG, details=st.one_of(st.none(), BIG), act=ACTION)
def test_any_request_shows_whole_in_valid_cards(question: str, details: str | None, act: str | None) -> None:
    req = ApprovalRequest("a", question, details=details, action=act)
    cards = r.whole_pieces(req)
    assert 1 <= len(cards) <= 4
    for card in cards:
        check_card(card)
    whole = r.clean(r.whole_request(req))
    if not whole:
        assert len(cards) == 1 and texts(cards[0])[1] == "(empty)"
        return
    pieces = "".join(texts(c)[1] for c in cards)
    if shown(cards[-1]).endswith("--full"):
        assert whole.startswith(pieces) and len(cards) == 4
    else:
        assert pieces == whole
