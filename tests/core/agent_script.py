"""A small agent that knows only the OpenTelemetry API (no spanvisor import).

Run by tests/core/test_entry_points.py under ``opentelemetry-instrument`` with
``OTEL_TRACES_EXPORTER=spanvisor``: spanvisor is wired in with no code.
"""

from __future__ import annotations

from opentelemetry import trace

tracer = trace.get_tracer("f47-agent")

with tracer.start_as_current_span(
    "Diagnose F47", attributes={"agent.task.name": "Diagnose F47", "agent.id": "rivet", "agent.repo": "plant/ops"}
) as root:
    root.add_event("agent.checkpoint", {"message": "Routed to siemens SME", "agent.progress": 30})
    with tracer.start_as_current_span("chat claude-sonnet-4", attributes={"gen_ai.operation.name": "chat"}) as call:
        call.set_attributes(
            {
                "gen_ai.request.model": "claude-sonnet-4-20250514",
                "gen_ai.usage.input_tokens": 150_000,
                "gen_ai.usage.output_tokens": 2_000,
            }
        )
    with tracer.start_as_current_span("execute_tool write_report") as tool:
        tool.add_event("agent.artifact", {"agent.artifact.name": "report.md", "agent.artifact.uri": "s3://r/report.md"})
    root.add_event("agent.checkpoint", {"message": "Validated fix", "agent.progress": 100})
