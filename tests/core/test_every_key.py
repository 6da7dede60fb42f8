"""Every key the tracker reads reaches it on every path.

The exporter's light path (``pipeline/sdkspans.py``) keeps only the stamps of
a span that carries no other key the tracker reads, and the receiver's
decoder turns only ``READ_KEYS`` into values: a key the tracker starts to read
must be in that one list (``spans/conventions.py``), or a path loses it.

* the tracker's reads, found in its source, are all in the list;
* every key of the list (and a result) survives each path as the full read has it,
  and gives the same events on the processor, exporter and receiver paths;
* a root's budget gives the same budget and warnings on every path.
"""

from __future__ import annotations

import ast
import inspect
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spanvisor.tracking
from spanvisor.events import BudgetWarning, Event, TaskFinished
from spanvisor.otel.processor import stamp_for
from spanvisor.pipeline.handover import compact_end
from spanvisor.pipeline.sdkspans import light_span
from spanvisor.receiver.decode import EXCEPTION_KEYS, decode_request
from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanData, from_sdk

from ._invariants import check_stream, final_states
from ._paths import exporter_run, processor_run, receiver_run, unstamped_spans
from ._trees import SpanSpec

# Strings of conventions that name no span attribute: event names (the live
# channel's log records too), the attributes of events (read from the event),
# the results' prefix and unit suffix (read by prefix on every path), and the
# resource's service name.
NOT_SPAN_KEYS = (
    cv.LIVE_EVENTS
    | cv.EVENT_KEYS
    | EXCEPTION_KEYS
    | {cv.EVENT_EXCEPTION, cv.RESULT_PREFIX, cv.RESULT_UNIT_SUFFIX, cv.SERVICE_NAME}
)


def _tracking_sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(Path(spanvisor.tracking.__file__).parent.glob("*.py")):
        yield path, ast.parse(path.read_text())


def _read_strings() -> dict[str, str]:
    """Every conventions string the tracker uses, directly or through a
    conventions helper it calls, and every dotted literal it reads with
    ``.get``: value -> where."""
    names: dict[str, str] = {}
    literals: dict[str, str] = {}
    for path, tree in _tracking_sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cv":
                names.setdefault(node.attr, path.name)
            elif isinstance(node, ast.ImportFrom) and node.module == "spanvisor.spans.conventions":
                for alias in node.names:
                    names.setdefault(alias.name, path.name)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and "." in node.args[0].value
            ):
                literals.setdefault(node.args[0].value, path.name)
    out: dict[str, str] = {}
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or not hasattr(cv, name):
            continue
        seen.add(name)
        value = getattr(cv, name)
        if isinstance(value, str):
            out.setdefault(value, f"cv.{name} in {names.get(name, 'a conventions helper')}")
        elif inspect.isfunction(value) and value.__module__ == cv.__name__:
            fn = ast.parse(inspect.getsource(value))
            todo.extend(n.id for n in ast.walk(fn) if isinstance(n, ast.Name))
    for lit, where in literals.items():
        out.setdefault(lit, f"{lit!r} in {where}")
    return out


def test_the_tracker_reads_no_span_key_outside_read_keys() -> None:
    reads = _read_strings()
    assert cv.BUDGET_TOKENS in reads and cv.GEN_AI_CACHE_READ in reads  # the scan sees through helpers
    missing = {where for key, where in reads.items() if key not in cv.READ_KEYS and key not in NOT_SPAN_KEYS}
    assert not missing, f"read by the tracker but not in conventions.READ_KEYS: {sorted(missing)}"


def _value(key: str) -> Any:
    """A valid value of the key as an agent would set it."""
    if key in (cv.STEPS, cv.ARTIFACTS):
        return ["plan", "edit"]
    if key in (cv.GEN_AI_OPERATION,):
        return "chat"
    if key == cv.OI_KIND:
        return "LLM"
    if key == cv.TL_KIND:
        return "task"
    if key == cv.STATUS:
        return "working"
    if key in (cv.BUDGET_USD, cv.GEN_AI_COST, cv.OI_COST):
        return 1.5
    if "token" in key or key in (cv.PROGRESS, cv.CONTEXT_LIMIT):
        return 40
    return f"v-{key}"


def _spans_with(key: str, value: Any) -> list[ReadableSpan]:
    """A task root and a stamped member, each carrying its identity and ``key``."""
    captured = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(captured))
    tracer = provider.get_tracer("agent")
    root_attrs = {cv.TASK_NAME: "t", cv.AGENT_ID: "rivet"}
    root = tracer.start_span("run", attributes={**root_attrs, key: value})
    ctx = root.get_span_context()
    stamp = stamp_for(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), root_attrs)
    child = tracer.start_span("step", context=trace.set_span_in_context(root), attributes={**stamp, key: value})
    child.end()
    root.end()
    return list(captured.get_finished_spans())


def _decoded(spans: list[ReadableSpan]) -> dict[str, SpanData]:
    body = encode_spans(spans).SerializeToString()
    got = decode_request(ExportTraceServiceRequest.FromString(body), body=body)
    assert got.rejected == 0, got.reasons
    return {s.span_id: s for s in got.spans}


def _same(v: Any) -> Any:
    return tuple(v) if isinstance(v, list | tuple) else v


@pytest.mark.parametrize("key", [*sorted(cv.READ_KEYS), cv.RESULT_PREFIX + "files"])
def test_every_read_key_reaches_the_tracker_on_every_path(key: str) -> None:
    spans = _spans_with(key, _value(key))
    decoded = _decoded(spans)
    for span in spans:
        full = from_sdk(span)
        want = _same(full.attributes.get(key))
        assert want is not None, key
        for path, got in (
            ("exporter", light_span(span)),
            ("processor member", light_span(compact_end(span))),
            ("receiver", decoded[full.span_id]),
        ):
            assert _same(got.attributes.get(key)) == want, (path, span.name, key)


def _budget_run(specs: list[SpanSpec]) -> dict[str, list[Event]]:
    in_process, stamped = processor_run(specs)
    unstamped = unstamped_spans(specs)
    return {
        "processor": in_process,
        "exporter stamped": exporter_run(stamped),
        "exporter unstamped": exporter_run(unstamped),
        "receiver stamped": receiver_run(stamped, random.Random(1)),
        "receiver unstamped": receiver_run(unstamped, random.Random(2)),
    }


def test_a_root_budget_warns_on_every_path() -> None:
    """A root naming only its task, its agent and a budget of 1,000 tokens,
    spending 1,800: budget 1000 and warnings at 80 % and 100 % everywhere."""
    trace_id = f"{1:032x}"
    root = SpanSpec(trace_id, f"{1:016x}", None, "run", 1_000_000_000, 1_000_900_000)
    root.start_attrs = {cv.TASK_NAME: "budgeted", cv.AGENT_ID: "rivet", cv.BUDGET_TOKENS: 1000}
    specs = [root]
    for i, (t_in, t_out) in enumerate([(500, 100), (500, 100), (500, 100)]):
        start = 1_000_000_000 + (i + 1) * 100_000
        call = SpanSpec(trace_id, f"{i + 2:016x}", root.span_id, "chat", start, start + 50_000)
        call.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "acme-llm-7"}
        call.updates = [(start + 50_000, {cv.GEN_AI_INPUT: t_in, cv.GEN_AI_OUTPUT: t_out})]
        specs.append(call)
    runs = _budget_run(specs)
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        finished = [e for e in events if isinstance(e, TaskFinished)]
        assert [e.task.budget_tokens for e in finished] == [1000], name
        levels = sorted(e.level for e in events if isinstance(e, BudgetWarning))
        assert levels == [0.8, 1.0], (name, levels)
    want = final_states(runs["processor"])
    for name, events in runs.items():
        assert final_states(events) == want, name


def _task_with(key: str, value: Any) -> list[SpanSpec]:
    """A root and a model call under it, each carrying ``key`` (as the agent sets it)."""
    trace_id = f"{3:032x}"
    root = SpanSpec(trace_id, f"{1:016x}", None, "run", 1_000_000_000, 1_000_900_000)
    root.start_attrs = {cv.TASK_NAME: "keyed", cv.AGENT_ID: "rivet", key: value}
    call = SpanSpec(trace_id, f"{2:016x}", root.span_id, "chat", 1_000_100_000, 1_000_200_000)
    call.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o", key: value}
    call.updates = [(call.end_ns, {cv.GEN_AI_INPUT: 700, cv.GEN_AI_OUTPUT: 70})]
    return [root, call]


@pytest.mark.parametrize("key", [*sorted(cv.FULL_READ_KEYS), cv.RESULT_PREFIX + "files"])
def test_every_read_key_gives_the_same_events_on_every_path(key: str) -> None:
    specs = _task_with(key, _value(key))
    in_process, stamped = processor_run(specs)
    runs = {
        "processor": in_process,
        "exporter stamped": exporter_run(stamped),
        "receiver stamped": receiver_run(stamped, random.Random(5)),
    }
    for name, events in runs.items():
        check_stream(events, all_finished=True)
        assert final_states(events) == final_states(in_process), (name, key)
