"""An agent process for tests/core/test_import_race.py (run as a script, in a
fresh interpreter: a module this test process imported already cannot be
caught being imported).

It records which thread last tried to import each module (a
``sys.meta_path`` finder installed before anything else: the import that
succeeded is the last attempt before the module is in ``sys.modules``),
builds spanvisor the way argv[1] says on the main thread, then runs agent
tasks with model calls while a thread stands in for openai 2.x: on every
"request" it reads ``sys.modules["httpx2"].Timeout`` as openai's client
does, and the same of each third-party module spanvisor may load, and notes
any module it finds half imported (in ``sys.modules`` while its code still
runs) by a thread other than the main one. Writes what it saw as JSON to argv[2].
"""

from __future__ import annotations

import importlib.abc
import json
import sys
import threading
import time
from typing import Any

IMPORTED_BY: dict[str, str] = {}


class _Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        IMPORTED_BY[name] = threading.current_thread().name
        return None


sys.meta_path.insert(0, _Recorder())

# What openai's client reads of a module found in sys.modules on each request
# (openai 2.x: ``sys.modules["httpx2"].Timeout``), and the like for the other
# third-party modules spanvisor or its sinks may import.
READS = {
    "httpx2": "Timeout",
    "httpx": "Timeout",
    "genai_prices": "calc_price",
    "pydantic": "BaseModel",
    "pydantic_core": "SchemaValidator",
    "anyio": "to_thread",
    "idna": "encode",
    "aiohttp": "ClientSession",
    "yarl": "URL",
    "multidict": "CIMultiDict",
    "slack_sdk": "WebClient",
    "asyncpg": "connect",
    "prometheus_client": "CollectorRegistry",
}
MODELS = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"),
    ("gemini-1.5-pro", "google"),
    ("a-model-no-one-prices", None),
]


def build(mode: str) -> Any:
    """The agent's TracerProvider with spanvisor, built as a user would."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if mode == "processor":
        from spanvisor.otel.processor import SpanvisorSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SpanvisorSpanProcessor())
    elif mode == "exporter":
        from spanvisor.otel.exporter import SpanvisorSpanExporter

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(SpanvisorSpanExporter(), schedule_delay_millis=50))
    else:  # OTEL_TRACES_EXPORTER=spanvisor SPANVISOR_LIVE=1 opentelemetry-instrument: what it calls
        from spanvisor.otel.autoconfig import SpanvisorConfigurator, install_live_processor

        SpanvisorConfigurator().configure()
        install_live_processor()
        provider = trace.get_tracer_provider()
    return provider


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    agent = threading.current_thread().name
    provider = build(mode)

    from spanvisor.agent import task

    errors: list[str] = []
    half: set[str] = set()
    reads = [0]
    stop = threading.Event()

    def requests() -> None:  # openai's client, in a tight loop
        while not stop.is_set():
            for name, attr in READS.items():
                m = sys.modules.get(name)
                if m is not None:
                    try:
                        getattr(m, attr)
                    except AttributeError as exc:
                        errors.append(str(exc))
            for name, m in list(sys.modules.items()):
                initializing = getattr(getattr(m, "__spec__", None), "_initializing", False)
                if initializing and IMPORTED_BY.get(name, agent) not in (agent, "agent-requests"):
                    half.add(name)
            reads[0] += 1

    reader = threading.Thread(target=requests, name="agent-requests", daemon=True)
    reader.start()
    tracer = provider.get_tracer("agent")
    for i in range(6):
        with task(f"task {i}", agent_id="racer", tracer=tracer) as t:
            t.checkpoint("half way", progress=50)
            for model, provider_name in MODELS:
                attrs: dict[str, Any] = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 1000 + i,
                    "gen_ai.usage.output_tokens": 100,
                }
                if provider_name:
                    attrs["gen_ai.provider.name"] = provider_name
                with tracer.start_as_current_span(f"chat {model}", attributes=attrs):
                    pass
        time.sleep(0.3)  # the pipeline's thread tracks (and prices) meanwhile
    provider.force_flush()
    provider.shutdown()
    stop.set()
    reader.join(10)
    # The stand-in's reads may import (pydantic resolves attributes lazily): the agent's own thread.
    agents = {agent, reader.name}
    off_thread = {m: th for m, th in IMPORTED_BY.items() if th not in agents and m in sys.modules}
    result = {
        "attribute_errors": len(errors),
        "first_errors": sorted(set(errors))[:5],
        "half_imported": sorted(half),
        "reads": reads[0],
        "off_thread": off_thread,
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
