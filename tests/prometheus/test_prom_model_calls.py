"""Model calls have their own counter; spanvisor_checkpoints_total counts the agent's checkpoints.

The regression: every model call with token usage was also counted in
``spanvisor_checkpoints_total``, doubling the overview's "Checkpoints/s".
"""

from __future__ import annotations

import dataclasses

import pytest
from prom_streams import S, feed, lifecycle, started_sink, val
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spanvisor.config import Config
from spanvisor.events import Checkpoint, Event
from spanvisor.otel.processor import SpanvisorSpanProcessor
from spanvisor.spans import conventions as cv
from spanvisor_prometheus import PrometheusSink
from spanvisor_prometheus.settings import SETTINGS

T0 = 1_700_000_000 * S
SONNET = "claude-sonnet-4-20250514"
EMBED = "text-embedding-3-small"


def test_a_real_agent_counts_checkpoints_and_model_calls_apart() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    registry = CollectorRegistry()
    config = Config.load(env={}, extra=SETTINGS).with_values(shutdown_timeout_s=2.0)
    processor = SpanvisorSpanProcessor(sinks=[PrometheusSink(registry=registry)], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    try:
        with tracer.start_as_current_span("report", attributes={cv.TASK_NAME: "report", cv.AGENT_ID: "rivet"}) as root:
            root.add_event(cv.EVENT_CHECKPOINT, {"message": "planning", cv.PROGRESS: 10})
            for i in range(2):
                with tracer.start_as_current_span(f"chat {SONNET}", attributes={cv.GEN_AI_OPERATION: "chat"}) as c:
                    c.set_attributes({cv.GEN_AI_REQUEST_MODEL: SONNET, cv.GEN_AI_INPUT: 1000 * (i + 1)})
                    c.set_attribute(cv.GEN_AI_OUTPUT, 50)
            with tracer.start_as_current_span(
                f"embeddings {EMBED}", attributes={cv.GEN_AI_OPERATION: "embeddings"}
            ) as e:
                e.set_attributes({cv.GEN_AI_REQUEST_MODEL: EMBED, cv.GEN_AI_INPUT: 300})
            root.add_event(cv.EVENT_CHECKPOINT, {"message": "writing", cv.PROGRESS: 80})
        assert processor.force_flush(10_000)
        # Two checkpoint events, not 2 + 3 model calls.
        assert val(registry, "spanvisor_checkpoints_total", agent="rivet") == 2
        assert _model_calls(registry, "rivet") == 3
        assert val(registry, "spanvisor_tokens_total", agent="rivet", direction="input") == 3300
    finally:
        processor.pipeline.shutdown(2.0)  # unregisters the sink's collectors


def _model_calls(registry: CollectorRegistry, agent: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        if f.name == "spanvisor_model_calls"
        for s in f.samples
        if s.labels["agent"] == agent
    )


def test_the_model_label_is_the_calls_own() -> None:
    """An embeddings call of a task whose conversation runs on Sonnet: the
    view keeps the conversation's model, the checkpoint names the call's."""
    sink, reg = started_sink()
    events = lifecycle("rivet", 1, T0, checkpoints=2, model=SONNET, outcome=None)
    chat, embed = (e for e in events if isinstance(e, Checkpoint))
    embed = dataclasses.replace(embed, attributes={"model": EMBED, "operation": "embeddings"})
    feed(sink, [events[0], chat, embed])
    assert val(reg, "spanvisor_model_calls_total", agent="rivet", model=SONNET) == 1
    assert val(reg, "spanvisor_model_calls_total", agent="rivet", model=EMBED) == 1
    assert val(reg, "spanvisor_checkpoints_total", agent="rivet") is None


def test_a_real_agent_labels_each_call_with_its_model() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    registry = CollectorRegistry()
    config = Config.load(env={}, extra=SETTINGS).with_values(shutdown_timeout_s=2.0)
    processor = SpanvisorSpanProcessor(sinks=[PrometheusSink(registry=registry)], config=config)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agent")
    try:
        with tracer.start_as_current_span("t", attributes={cv.TASK_NAME: "t", cv.AGENT_ID: "rivet"}):
            with tracer.start_as_current_span("chat", attributes={cv.GEN_AI_OPERATION: "chat"}) as c:
                c.set_attributes({cv.GEN_AI_REQUEST_MODEL: SONNET, cv.GEN_AI_INPUT: 1000, cv.GEN_AI_OUTPUT: 5})
            with tracer.start_as_current_span("embeddings", attributes={cv.GEN_AI_OPERATION: "embeddings"}) as e:
                e.set_attributes({cv.GEN_AI_REQUEST_MODEL: EMBED, cv.GEN_AI_INPUT: 300})
        assert processor.force_flush(10_000)
        assert val(registry, "spanvisor_model_calls_total", agent="rivet", model=SONNET) == 1
        assert val(registry, "spanvisor_model_calls_total", agent="rivet", model=EMBED) == 1
    finally:
        processor.pipeline.shutdown(2.0)


def test_one_model_calls_family_in_a_scrape() -> None:
    """The pipeline's stats table names model_calls_total too: the family appears once."""
    sink, reg = started_sink()
    feed(sink, lifecycle("rivet", 1, T0, checkpoints=2, model=SONNET))
    text = generate_latest(reg).decode()
    families = [f for f in text_string_to_metric_families(text) if f.name == "spanvisor_model_calls"]
    assert len(families) == 1 and families[0].type == "counter"
    assert {s.labels["model"] for s in families[0].samples} == {SONNET}
    assert text.count("# TYPE spanvisor_model_calls_total counter") == 1


def series(reg: CollectorRegistry, name: str) -> int:
    return sum(1 for line in generate_latest(reg).decode().splitlines() if line.startswith(name + "{"))


@pytest.mark.parametrize(("max_agents", "max_models"), [(50, 50), (5, 3)])
def test_model_label_is_capped_on_agent_model_pairs(max_agents: int, max_models: int) -> None:
    sink, reg = started_sink(metrics_max_agents=max_agents, metrics_max_models=max_models)
    events: list[Event] = []
    n = 0
    for a in range(max_agents + 5):
        for m in range(max_models + 5):
            n += 1
            events += lifecycle(f"agent-{a}", n, T0, checkpoints=1, model=f"model-{m}")
    feed(sink, events)
    # Admitted pairs, and model="other" once per agent label (the admitted ones and "other").
    assert series(reg, "spanvisor_model_calls_total") == max_models + max_agents + 1
    assert val(reg, "spanvisor_label_overflow_total", label="model") > 0  # type: ignore[operator]
    # Every call is still counted, under some label.
    total = sum(
        s.value
        for f in text_string_to_metric_families(generate_latest(reg).decode())
        if f.name == "spanvisor_model_calls"
        for s in f.samples
    )
    assert total == n
