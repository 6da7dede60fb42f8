"""The tracker alone: CPU per span on decoded spans, as under ``spanvisor serve``.

Run: ``.venv/bin/python benchmarks/bench_tracker.py`` (about 20 s on an idle
2-core machine). Options: ``--reps N`` (default 3, the best is reported),
``--bodies N`` request bodies per payload and rep (default 20, ~10,000
spans), ``--profile`` prints a cProfile of one rep per payload, sorted by
own time, ``--quick`` is a smoke run.

For each payload of ``benchmarks/_payloads.py`` (``agent``: every span an
agent span; ``mix``: the project's own, ~84 % plain spans), request bodies
with unique ids are decoded by the receiver's ``decode_request`` before the
clock starts; then a fresh ``TaskTracker`` (default settings, as ``serve``
builds it from a default config) gets every span through ``span_ended``,
in request order, timed with this thread's CPU clock. One body is tracked
first, untimed, so that the first priced call's import of genai-prices and
other one-off costs stay out of the figure.

Reported per payload: the best and median of the reps in CPU µs per span
(the best is the figure least disturbed by other work on a shared machine)
and the events the tracker emitted, by kind: the same code must give the
same counts, so a change that alters them has changed behaviour, not speed.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from _payloads import MIXES, Template
from spanvisor.config import Config
from spanvisor.receiver.decode import decode_request
from spanvisor.spans.data import SpanData
from spanvisor.stats import PipelineStats
from spanvisor.tracking.taskcontext import TrackerSettings
from spanvisor.tracking.tracker import TaskTracker

PAYLOADS = ("agent", "mix")


def _tracker() -> TaskTracker:
    c = Config.load(env={}, extra=())  # defaults only: not a developer's env
    return TaskTracker(
        TrackerSettings.from_config(c),
        max_open_tasks=c["max_open_tasks"],
        dedup_window=c["dedup_window"],
        root_hold_s=c["root_hold_s"],
        stats=PipelineStats(),
    )


def _decoded(tpl: Template, first: int, count: int) -> list[list[SpanData]]:
    return [
        decode_request(ExportTraceServiceRequest.FromString(tpl.copy(k))).spans for k in range(first, first + count)
    ]


def run_once(
    tpl: Template, batches: list[list[SpanData]], prof: cProfile.Profile | None = None
) -> tuple[float, int, collections.Counter[str]]:
    """(CPU ns per span, spans, events by kind) for one fresh tracker."""
    tracker = _tracker()
    for span in _decoded(tpl, 0, 1)[0]:  # warm-up: imports, caches
        tracker.span_ended(span)
    kinds: collections.Counter[str] = collections.Counter()
    n = 0
    ended = tracker.span_ended
    if prof is not None:
        prof.enable()
    c0 = time.thread_time_ns()
    for batch in batches:
        for span in batch:
            for ev in ended(span):
                kinds[ev.__class__.__name__] += 1
        n += len(batch)
    ns = time.thread_time_ns() - c0
    if prof is not None:
        prof.disable()
    return ns / n, n, kinds


def _top(prof: cProfile.Profile, n: int = 25) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(n)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The tracker's CPU per decoded span.")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--bodies", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="cProfile one rep per payload")
    ap.add_argument("--quick", action="store_true", help="few bodies and reps, for a smoke run")
    args = ap.parse_args(argv)
    reps, count = (1, 3) if args.quick else (max(1, args.reps), max(1, args.bodies))
    t0 = time.monotonic()
    results: dict[str, tuple[list[float], int, collections.Counter[str]]] = {}
    templates = {name: Template(MIXES[name]) for name in PAYLOADS}
    # Unique ids in every rep (a tracker per rep, but ids never repeat anyway).
    decoded = {name: [_decoded(tpl, 1 + r * count, count) for r in range(reps)] for name, tpl in templates.items()}
    for r in range(reps):  # interleaved, so drift on a shared machine hits both payloads alike
        for name in PAYLOADS:
            per_span, n, kinds = run_once(templates[name], decoded[name][r])
            vals, _, _ = results.setdefault(name, ([], n, kinds))
            vals.append(per_span)
            if results[name][2] != kinds:
                print(f"warning: {name}: event counts differ between reps: {dict(kinds)}")
    print(
        f"spanvisor bench_tracker: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{reps} reps x {count} bodies per payload, load {os.getloadavg()[0]:.1f}, {time.monotonic() - t0:.0f} s"
    )
    for name in PAYLOADS:
        vals, n, kinds = results[name]
        events = ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items()))
        print(
            f"{name:>5}: best {min(vals) / 1e3:6.1f} µs/span, median {statistics.median(vals) / 1e3:6.1f} "
            f"({n:,} spans a rep; {sum(kinds.values()):,} events: {events})"
        )
    if args.profile:
        for name in PAYLOADS:
            prof = cProfile.Profile()
            run_once(templates[name], decoded[name][0], prof)
            print(f"\ncProfile, {name}, sorted by own time:")
            print(_top(prof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
