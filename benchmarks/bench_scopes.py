"""What reading a request's scopes in end order costs the receiver's decode.

    .venv/bin/python benchmarks/bench_scopes.py [--rounds 7]

The OTLP exporters group a resource's spans by instrumentation scope; the
receiver merges the scopes of one resource back into the order their spans
ended (``receiver/decode.py``). This decodes the same spans two ways, in
alternating rounds on the same process: as ``benchmarks/_payloads.py``
makes them (one scope a resource: nothing to merge) and split into two
scopes (the model calls in an LLM client's scope, the rest in a
framework's: a merge every request). Reported: the median of each and
their ratio, the merge's cost per request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from _payloads import MIXES, bodies
from spanvisor.receiver.decode import decode_request

USAGE = "gen_ai.usage.input_tokens"


def two_scopes(body: bytes) -> bytes:
    """The same spans, the model calls in a scope of their own."""
    req = ExportTraceServiceRequest.FromString(body)
    out = ExportTraceServiceRequest()
    for rs in req.resource_spans:
        target = out.resource_spans.add()
        target.resource.CopyFrom(rs.resource)
        framework, client = target.scope_spans.add(), target.scope_spans.add()
        framework.scope.name, client.scope.name = "example.framework", "openinference.instrumentation.openai"
        for ss in rs.scope_spans:
            for span in ss.spans:
                calls = any(kv.key == USAGE for kv in span.attributes)
                (client if calls else framework).spans.add().CopyFrom(span)
    return out.SerializeToString()


def decode_all(payload: list[bytes]) -> float:
    reqs = [ExportTraceServiceRequest.FromString(b) for b in payload]
    started = time.perf_counter()
    for req, body in zip(reqs, payload, strict=True):
        decode_request(req, body=body)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for name in ("mix", "agent"):
        one = [b for b, _ in bodies(MIXES[name], 20)]
        two = [two_scopes(b) for b in one]
        spans = sum(len(decode_request(ExportTraceServiceRequest.FromString(b), body=b).spans) for b in one)
        times: dict[str, list[float]] = {"one": [], "two": []}
        for r in range(args.rounds):
            for label in ("one", "two") if r % 2 == 0 else ("two", "one"):
                times[label].append(decode_all(one if label == "one" else two))
        a, b = statistics.median(times["one"]), statistics.median(times["two"])
        print(
            f"{name:6} {spans} spans: one scope {a * 1e6 / spans:5.2f} us/span, "
            f"two scopes merged {b * 1e6 / spans:5.2f} us/span, two/one {b / a:.3f}"
        )


if __name__ == "__main__":
    main()
