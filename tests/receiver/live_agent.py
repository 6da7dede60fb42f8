"""An agent process for the live-channel tests: the real SDK exporting spans
over OTLP/HTTP (BatchSpanProcessor, default delays), the helper's live
channel sending log records; it opens a task, reports progress, then waits
to be killed (``python live_agent.py URL TASK_ID``)."""

from __future__ import annotations

import sys
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from spanvisor.agent import task


def main(url: str, task_id: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "worker-pod-7"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=10)))
    tracer = provider.get_tracer("agent")
    with task("Reindex search", agent_id="indexer", task_id=task_id, steps=["scan", "write"], tracer=tracer) as t:
        t.checkpoint("Scanning shards", progress=35, step="scan")
        print("ready", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
