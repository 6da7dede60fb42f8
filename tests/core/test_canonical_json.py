"""RFC 8785 (JCS): the examples of the RFC, and what it refuses."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanvisor.canonical import MAX_ACTION_BYTES, NotCanonical, approval_digest, canonical_json, check_action, es_number

# RFC 8785 appendix B: IEEE 754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), APPENDIX_B)
def test_numbers_of_appendix_b(bits: str, text: str) -> None:
    (x,) = struct.unpack(">d", bytes.fromhex(bits))
    assert es_number(x) == text


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    (x,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(NotCanonical):
        es_number(x)
    with pytest.raises(NotCanonical):
        canonical_json({"a": [x]})


def test_the_rfc_example_of_section_3_2_2() -> None:
    raw = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    want = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(raw)) == want


def test_the_rfc_sorting_example_of_section_3_2_3() -> None:
    raw = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    out = json.loads(canonical_json(json.loads(raw)))
    assert list(out.values()) == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_huge_integers_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(NotCanonical):
        canonical_json(2**53 + 1)
    assert canonical_json(2**53) == "9007199254740992"
    with pytest.raises(NotCanonical):
        canonical_json("\ud800")
    with pytest.raises(NotCanonical):
        canonical_json({1: "x"})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(-(2.0**53), 2.0**53)  # beyond, a float reads back as a huge int
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_canonical_json_reads_back_as_the_same_value_and_is_a_fixed_point(v: object) -> None:
    text = canonical_json(v)
    back = json.loads(text)
    assert canonical_json(back) == text
    assert _same(back, v)


def _same(a: object, b: object) -> bool:
    if isinstance(b, float) and not isinstance(a, bool):
        return isinstance(a, int | float) and (a == b or (math.isclose(a, b) and a == float(repr(b))))
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_actions_are_checked_and_bounded() -> None:
    assert check_action({"tool": "migrate"}) == {"tool": "migrate", "arguments": {}}
    for bad in ({}, {"tool": ""}, {"tool": "x", "arguments": []}, {"tool": "x", "extra": 1}, "migrate"):
        with pytest.raises(NotCanonical):
            check_action(bad)
    with pytest.raises(NotCanonical):
        check_action({"tool": "x", "arguments": {"blob": "a" * (MAX_ACTION_BYTES + 1)}})
    # A large Write is an action too: well over the old 8 KiB, under the cap.
    assert check_action({"tool": "Write", "arguments": {"content": "a" * 50_000}})["tool"] == "Write"
    with pytest.raises(NotCanonical):
        check_action({"tool": "x", "arguments": {"n": float("nan")}})


def test_the_digest_covers_every_field_and_not_the_key_order() -> None:
    base = {"agent": "a", "task": "t", "run": "r", "approval_id": "a1", "question": "Run the migration?"}
    one = approval_digest(**base, options=("approve", "reject"), action={"tool": "m", "arguments": {"x": 1, "y": 2}})
    same = approval_digest(**base, options=["approve", "reject"], action={"arguments": {"y": 2, "x": 1.0}, "tool": "m"})
    assert one == same and len(one) == 64
    assert one != approval_digest(**base, options=("approve", "reject"), action={"tool": "m", "arguments": {"x": 2}})
    assert one != approval_digest(
        **{**base, "run": "r2"}, options=("approve", "reject"), action={"tool": "m", "arguments": {"x": 1, "y": 2}}
    )
    assert approval_digest(**base, options=(), details="staging") != approval_digest(**base, options=(), details="prod")
