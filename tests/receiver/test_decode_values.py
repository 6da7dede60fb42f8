"""The decoder reads a non-empty string without asking its kind first: every
value, of every kind, still comes out as :func:`decode.any_value` reads it
(cut at its key's limit, shared where the key's values repeat)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanvisor.receiver import decode
from spanvisor.receiver.vocabulary import MAX_LENGTH, MAX_STRING, SHARED_KEYS, limit_of
from spanvisor.spans import conventions as cv

_LONG = "y" * (MAX_STRING + 5)
_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", _LONG]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.text(max_size=4), max_size=3),
    st.none(),  # an AnyValue with no kind set
)
# Keyed, shared, long-limited, a task's result, and one the tracker never reads.
_KEYS = st.sampled_from([cv.TASK_ID, cv.AGENT_NAME, cv.DIFF_TEXT, cv.APPROVAL_ACTION, "agent.result.pr", "http.url"])


def _any(value: Any) -> AnyValue:
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
    return AnyValue(string_value=value)


def _read_as_any_value(pairs: list[tuple[str, Any]], keys: frozenset[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if keys is not None and key not in keys and not key.startswith(cv.RESULT_PREFIX):
            continue
        got = decode.any_value(_any(value), limit_of(key))
        if got is not None:
            out[key] = got
    return out


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
def test_attributes_read_every_kind_as_any_value(pairs: list[tuple[str, Any]]) -> None:
    kvs = [KeyValue(key=k, value=_any(v)) for k, v in pairs]
    got = decode.attributes(kvs)
    assert got == _read_as_any_value(pairs, None)
    for key, value in got.items():
        if key in SHARED_KEYS and isinstance(value, str) and len(value) <= MAX_LENGTH:
            assert decode._shared(value) is value  # one copy of a value that repeats


@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
def test_a_spans_keys_read_every_kind_as_any_value(pairs: list[tuple[str, Any]]) -> None:
    span = Span(attributes=[KeyValue(key=k, value=_any(v)) for k, v in pairs])
    got = decode._read_keys(span, span.events)
    expected = _read_as_any_value(pairs, decode.SPAN_KEYS)
    if got is None:  # no key that makes a span keyed: an id link
        assert not any(k in cv.KNOWN_KEYS for k, _ in pairs)
    else:
        assert got == expected
