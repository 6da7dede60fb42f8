"""Sanitising agent-controlled values: clamped or truncated, never silently.

Every change is recorded as a note naming the key and the reason; clean
input produces no note. (Slack-specific escaping lives in the Slack plugin.)
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings

from spanvisor.spans import sanitize as sz

from ._strategies import HUGE_INTS, LONE_SURROGATE, MEGABYTE, NOT_UTF8, junk_values


@pytest.mark.parametrize(
    ("raw", "want", "note"),
    [
        (40, 40.0, None),
        ("40", 40.0, None),
        ("40%", 40.0, None),
        (140, 100.0, "agent.progress: 140 clamped to 100"),
        (-3, 0.0, "agent.progress: -3 clamped to 0"),
        (1e300, 100.0, "clamped to 100"),
        (float("nan"), None, "agent.progress: ignored nan"),
        (float("inf"), None, "agent.progress: ignored inf"),
        ("1e400", None, "agent.progress: ignored inf"),
        (10**400, None, "agent.progress: ignored inf"),
        (-(10**400), None, "agent.progress: ignored -inf"),
        ("almost done", None, "agent.progress: ignored non-number 'almost done'"),
        (True, None, "agent.progress: ignored boolean True"),
        (None, None, None),
    ],
)
def test_progress(raw: Any, want: float | None, note: str | None) -> None:
    notes: list[str] = []
    assert sz.progress(raw, notes) == want
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and note in notes[0], notes


@pytest.mark.parametrize(
    ("raw", "want", "note"),
    [
        (12_000, 12_000, None),
        ("12000", 12_000, None),
        (12_000.7, 12_000, None),
        (-5, None, "negative -5 ignored"),
        (10**12, sz.MAX_TOKENS, "clamped to 100,000,000"),
        (10**400, None, "ignored inf"),
        (float("nan"), None, "ignored nan"),
        ("many", None, "ignored non-number"),
        ([1, 2], None, "ignored non-number"),
    ],
)
def test_tokens(raw: Any, want: int | None, note: str | None) -> None:
    notes: list[str] = []
    assert sz.tokens(raw, "gen_ai.usage.input_tokens", notes) == want
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith("gen_ai.usage.input_tokens: ") and note in notes[0], notes


def test_megabyte_text_is_truncated_with_a_visible_marker_and_a_note() -> None:
    notes: list[str] = []
    out = sz.text(MEGABYTE, "agent.message", notes)
    assert out is not None and len(out) == sz.MAX_TEXT and out.endswith("…")
    assert notes == [f"agent.message: truncated from 1,000,000 to {sz.MAX_TEXT:,} characters"]
    notes = []
    assert sz.name(MEGABYTE, "agent.step", notes) == "m" * (sz.MAX_NAME - 1) + "…"
    assert "truncated" in notes[0]


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        (NOT_UTF8, "bytes decoded as UTF-8"),
        (LONE_SURROGATE, "invalid UTF-8 replaced"),
        ("a\x00b", "NUL characters removed"),
    ],
)
def test_bad_text_is_repaired_and_noted(raw: Any, note: str) -> None:
    notes: list[str] = []
    out = sz.text(raw, "agent.message", notes)
    assert out is not None
    out.encode("utf-8")
    assert "\x00" not in out
    assert notes and notes[0] == f"agent.message: {note}"


def test_clean_text_has_no_notes() -> None:
    notes: list[str] = []
    assert sz.text("Routed to siemens SME", "agent.message", notes) == "Routed to siemens SME"
    assert sz.text("", "agent.message", notes) is None
    assert notes == []


def test_string_lists() -> None:
    notes: list[str] = []
    assert sz.string_list('["plan", "edit", "test"]', "agent.steps", notes) == ("plan", "edit", "test")
    assert sz.string_list("plan, edit ,test", "agent.steps", notes) == ("plan", "edit", "test")
    assert sz.string_list(("plan", "", " edit "), "agent.steps", notes) == ("plan", "edit")
    assert notes == []
    many = [f"s{i}" for i in range(sz.MAX_LIST + 50)]
    assert len(sz.string_list(many, "agent.steps", notes)) == sz.MAX_LIST
    assert notes == [f"agent.steps: kept the first {sz.MAX_LIST} of {sz.MAX_LIST + 50} items"]


def test_notes_are_bounded() -> None:
    notes: list[str] = []
    for _ in range(100):
        sz.progress(500, notes)
    assert len(notes) == sz.MAX_NOTES


def test_jsonable() -> None:
    notes: list[str] = []
    assert sz.jsonable(float("nan"), "x", notes) is None
    assert sz.jsonable([1, float("inf"), "a"], "x", notes) == [1, None, "a"]
    assert sz.jsonable(HUGE_INTS[0], "x", notes) == HUGE_INTS[0]  # JSON has no int limit
    assert sz.jsonable(NOT_UTF8, "x", notes) == NOT_UTF8.decode("utf-8", "replace")


@settings(max_examples=200, deadline=None)
@given(v=junk_values)
def test_readers_never_raise_and_return_clean_values(v: Any) -> None:
    notes: list[str] = []
    p = sz.progress(v, notes)
    assert p is None or 0 <= p <= 100
    t = sz.tokens(v, "k", notes)
    assert t is None or 0 <= t <= sz.MAX_TOKENS
    n = sz.number(v, "k", notes)
    assert n is None or math.isfinite(n)
    for s in (sz.text(v, "k", notes), sz.name(v, "k", notes)):
        if s is not None:
            s.encode("utf-8")
            assert "\x00" not in s and len(s) <= sz.MAX_TEXT
    for item in sz.string_list(v, "k", notes):
        item.encode("utf-8")
        assert len(item) <= sz.MAX_NAME
    sz.jsonable(v, "k", notes)
    assert len(notes) <= sz.MAX_NOTES
