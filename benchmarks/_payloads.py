"""OTLP request bodies in which every span is new: fresh trace, span and task ids.

A receiver that is sent the same body twice drops the second copy's spans as
duplicates, and its tracker then does almost nothing: a benchmark that
resends a handful of bodies measures the duplicate check, not the work. So
each body here is a template made once with the real OTel SDK and encoder
(``tests/receiver/agent_traces.py``), copied with every id replaced:

* the raw 16-byte trace ids and 8-byte span ids (as ``trace_id``,
  ``span_id`` and ``parent_span_id``),
* their hex forms inside attribute values (the stamp
  ``agent.task.root_span_id``),
* the task ids (``agent.task.id``, and inside checkpoint messages).

Ids keep their length, so the protobuf layout is unchanged and a copy is a
``bytearray`` copy plus a few thousand slice writes (well under a
millisecond for 500 spans): bodies are made before the clock starts, so the
client costs the server nothing.

Two mixes:

* ``mix``: the project's own (:func:`agent_traces.task_spans` defaults):
  per task an ``invoke_agent`` root, model calls with usage, checkpoint
  spans and many plain HTTP/database spans with no agent key (~84 %).
* ``agent``: every span an agent span (root, model calls with usage,
  checkpoint spans; no plain span): the heaviest case for the tracker and
  for the PostgreSQL sink (about one timeline row per span).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests" / "receiver") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "receiver"))

from agent_traces import agent_task, make_provider, request_for  # type: ignore[import-not-found]  # noqa: E402

# Task ids in the template: fixed width, so a copy's ids fit the same bytes.
_TASK_ID_WIDTH = 13


@dataclass(frozen=True)
class Mix:
    name: str
    tasks: int  # tasks per request
    checkpoints: int  # model call + checkpoint span pairs per task
    plain_per_step: int  # plain (keyless) spans under each of them

    def describe(self) -> str:
        return MIX_TEXT[self.name]


MIXES = {
    # ~520 spans a request, 16 % keyed: the project's own mix.
    "mix": Mix("mix", tasks=12, checkpoints=3, plain_per_step=6),
    # ~490 spans a request, every one an agent span.
    "agent": Mix("agent", tasks=6, checkpoints=40, plain_per_step=0),
    # Small tasks (a model call and a checkpoint span), for open-task counts.
    "small": Mix("small", tasks=50, checkpoints=1, plain_per_step=0),
}
MIX_TEXT = {
    "mix": "project mix (per task: invoke_agent root, model calls, checkpoint spans, ~84 % plain HTTP/db spans)",
    "agent": "all agent spans (per task: invoke_agent root, 40 model calls with usage, 40 checkpoint spans)",
    "small": "small tasks (per task: invoke_agent root, one model call, one checkpoint span)",
}


def _task_id(request: int, task: int) -> bytes:
    s = f"r{request:08d}t{task:03d}"
    assert len(s) == _TASK_ID_WIDTH
    return s.encode()


class Template:
    """One request body and where each id sits in it."""

    def __init__(self, mix: Mix, seed: int = 7, roots: bool = True) -> None:
        """``roots`` False leaves every task's root span out: its tasks stay
        open (the children are stamped, so they open them)."""
        import random

        tp, cap = make_provider()
        tracer = tp.get_tracer("agent")
        rng = random.Random(seed)
        task_ids = [_task_id(0, i) for i in range(mix.tasks)]
        for tid in task_ids:
            agent_task(tracer, tid.decode(), rng, checkpoints=mix.checkpoints, plain_per_step=mix.plain_per_step)
        tp.shutdown()
        kept = [s for s in cap.spans if roots or s.parent is not None]
        self.mix = mix
        self.n_spans = len(kept)
        body = request_for(kept).SerializeToString()
        self.body = body
        trace_ids = sorted({s.get_span_context().trace_id for s in cap.spans})
        span_ids = [s.get_span_context().span_id for s in cap.spans]
        # (offset, kind, index): kind 0 raw trace id, 1 raw span id, 2 hex span
        # id, 3 hex trace id, 4 task id.
        self.sites: list[tuple[int, int, int]] = []
        for i, t in enumerate(trace_ids):
            self._find(t.to_bytes(16, "big"), 0, i)
            self._find(format(t, "032x").encode(), 3, i)
        for i, s in enumerate(span_ids):
            self._find(s.to_bytes(8, "big"), 1, i)
            self._find(format(s, "016x").encode(), 2, i)
        for i, tid in enumerate(task_ids):
            self._find(tid, 4, i)
        self.sites.sort()
        widths = {0: 16, 1: 8, 2: 16, 3: 32, 4: _TASK_ID_WIDTH}
        for (a, ka, _), (b, _, _) in zip(self.sites, self.sites[1:], strict=False):
            if a + widths[ka] > b:
                raise RuntimeError("two ids overlap in the template; try another seed")
        self.n_traces = len(trace_ids)
        self.n_span_ids = len(span_ids)
        self.n_tasks = len(task_ids)

    def _find(self, needle: bytes, kind: int, index: int) -> None:
        i = self.body.find(needle)
        if i < 0 and kind == 0:
            raise RuntimeError("a trace id is missing from the encoded body")
        while i >= 0:
            self.sites.append((i, kind, index))
            i = self.body.find(needle, i + 1)

    def copy(self, request: int) -> bytes:
        """The template with every trace, span and task id new (``request``
        numbers the task ids, so they never repeat within a run)."""
        rnd = os.urandom(16 * self.n_traces + 8 * self.n_span_ids)
        traces = [rnd[16 * i : 16 * i + 16] for i in range(self.n_traces)]
        base = 16 * self.n_traces
        spans = [rnd[base + 8 * i : base + 8 * i + 8] for i in range(self.n_span_ids)]
        new: dict[int, list[bytes]] = {
            0: traces,
            1: spans,
            2: [s.hex().encode() for s in spans],
            3: [t.hex().encode() for t in traces],
            4: [_task_id(request, i) for i in range(self.n_tasks)],
        }
        out = bytearray(self.body)
        for off, kind, index in self.sites:
            value = new[kind][index]
            out[off : off + len(value)] = value
        return bytes(out)


def bodies(mix: Mix, count: int, first: int = 1, seed: int = 7) -> Iterator[tuple[bytes, int]]:
    """``count`` bodies with unique ids: (body, spans in it)."""
    tpl = Template(mix, seed)
    for k in range(first, first + count):
        yield tpl.copy(k), tpl.n_spans


def check_unique(body_a: bytes, body_b: bytes) -> None:
    """Raises unless two copies share no trace or span id (a self-check the
    benchmarks run once, so a broken template cannot pass as unique)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    def ids(body: bytes) -> set[Any]:
        req = ExportTraceServiceRequest.FromString(body)
        out: set[Any] = set()
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    out.add(bytes(sp.trace_id))
                    out.add(bytes(sp.span_id))
        return out

    if ids(body_a) & ids(body_b):
        raise RuntimeError("two copies share ids: the template is not being rewritten")
