"""What one ``spanvisor emit`` call sends: its span(s), with ids derived from
the task id so that separate processes build one task
(:mod:`spanvisor.cli.emit` says how), and the OTLP exporter they go through.
Shared by ``emit`` and ``emit approval``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.spans import conventions as cv


def task_ids(task: str) -> tuple[int, int]:
    """(trace id, root span id) of task ``task``: the same in every process."""

    def h(kind: str, size: int) -> int:
        n = int.from_bytes(hashlib.blake2b(f"{kind}\x1f{task}".encode(), digest_size=size).digest(), "big")
        return n or 1  # all-zero ids are invalid in OTLP

    return h("spanvisor.trace", 16), h("spanvisor.root", 8)


def state_file(config: Config, task: str) -> Path:
    digest = hashlib.blake2b(task.encode(), digest_size=8).hexdigest()
    return config.data_dir / "emit" / f"{digest}.json"


def given(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def build_spans(args: argparse.Namespace, config: Config, now_ns: int | None = None) -> list[Any]:
    """The span(s) one ``emit`` call sends, as SDK ReadableSpans."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

    def opt(name: str) -> Any:
        return getattr(args, name, None)

    now = now_ns or time.time_ns()
    trace_id, root_id = task_ids(args.task)
    root_hex = format(root_id, "016x")
    stamp = given(**{cv.TASK_ID: args.task, cv.TASK_ROOT: root_hex, cv.AGENT_ID: args.agent})
    ended: list[ReadableSpan] = []

    class Ids(IdGenerator):
        """Hands out the ids ``emit`` decided on (deterministic, see above)."""

        def __init__(self, trace_id: int, span_id: int) -> None:
            self.trace_id, self.span_id = trace_id, span_id

        def generate_trace_id(self) -> int:
            return self.trace_id

        def generate_span_id(self) -> int:
            return self.span_id

        def is_trace_id_random(self) -> bool:
            return False

    class Keep(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            ended.append(span)

    service = os.environ.get("OTEL_SERVICE_NAME") or "spanvisor-emit"
    kind = args.kind
    child_id = (
        int.from_bytes(hashlib.blake2b(f"{args.task}\x1f{kind}\x1f{now}".encode(), digest_size=8).digest(), "big") or 1
    )
    is_root = kind == "finish"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        id_generator=Ids(trace_id, root_id if is_root else child_id),
    )
    provider.add_span_processor(Keep())
    tracer = provider.get_tracer("spanvisor.emit")
    if is_root:
        parent_ctx = None
        start = opt("started_ns") or read_start(config, args.task) or now
        attrs = {**stamp, **given(**{cv.TASK_NAME: opt("name"), cv.STATUS: opt("status"), cv.MESSAGE: opt("message")})}
        span = tracer.start_span(opt("name") or args.task, context=parent_ctx, start_time=start, attributes=attrs)
        if opt("status") == "error":
            span.set_status(Status(StatusCode.ERROR, opt("error") or opt("message") or "failed"))
            if opt("error"):
                span.add_event(cv.EVENT_EXCEPTION, {"exception.type": "Error", "exception.message": opt("error")})
        span.end(end_time=max(now, start))
        return list(ended)
    parent = SpanContext(trace_id, root_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    if kind == "start":
        # No agent.status here: an explicit status sticks until the agent sets
        # another, so "starting" would outlive every later checkpoint. The
        # tracker infers starting, then working with the first real change.
        attrs = {
            **stamp,
            **given(
                **{
                    cv.TASK_NAME: opt("name"),
                    cv.REPO: opt("repo"),
                    cv.MESSAGE: opt("message"),
                    cv.AGENT_NAME: opt("agent_name"),
                }
            ),
        }
        span = tracer.start_span("task start", context=ctx, start_time=now, attributes=attrs)
    elif kind == "checkpoint":
        state = given(
            **{
                cv.PROGRESS: opt("progress"),
                cv.STEP: opt("step"),
                cv.STATUS: opt("status"),
                cv.MESSAGE: opt("message"),
                cv.CONTEXT_TOKENS: opt("tokens"),
                cv.CONTEXT_LIMIT: opt("limit"),
            }
        )
        # The state goes on the event only: on the span too it would be read
        # twice, as a state change and as a checkpoint event.
        span = tracer.start_span("checkpoint", context=ctx, start_time=now, attributes=stamp)
        span.add_event(cv.EVENT_CHECKPOINT, state, timestamp=now)
    elif kind in ("approval", "approval_decision"):
        # The shell agent's question, or its note of the answer it read back
        # (spanvisor.cli.emit_approval sends both).
        event = cv.EVENT_APPROVAL_REQUEST if kind == "approval" else cv.EVENT_APPROVAL_DECISION
        span = tracer.start_span(event, context=ctx, start_time=now, attributes=stamp)
        span.add_event(
            event,
            given(
                **{
                    cv.APPROVAL_ID: opt("approval_id"),
                    cv.APPROVAL_QUESTION: opt("question") if kind == "approval" else None,
                    cv.APPROVAL_TIMEOUT_S: float(opt("wait")) if kind == "approval" and opt("wait") else None,
                    cv.APPROVAL_DETAILS: opt("details") if kind == "approval" else None,
                    cv.APPROVAL_ACTION: opt("action_json") if kind == "approval" else None,
                    cv.APPROVAL_APPROVERS: opt("approvers") if kind == "approval" else None,
                    cv.APPROVAL_REQUESTER: opt("requester") if kind == "approval" else None,
                    cv.APPROVAL_FROM: opt("approvers_from") if kind == "approval" else None,
                    cv.APPROVAL_PERMIT_KEY: opt("permit_key") if kind == "approval" else None,
                    cv.APPROVAL_OUTCOME: opt("outcome") if kind != "approval" else None,
                    cv.APPROVAL_DECIDED_BY: opt("decided_by") if kind != "approval" else None,
                }
            ),
            timestamp=now,
        )
    else:
        span = tracer.start_span("artifact", context=ctx, start_time=now, attributes=stamp)
        span.add_event(
            cv.EVENT_ARTIFACT,
            given(
                **{
                    cv.ARTIFACT_NAME: opt("name") or _last_part(opt("uri")),
                    cv.ARTIFACT_URI: opt("uri"),
                    cv.ARTIFACT_KIND: opt("artifact_kind"),
                }
            ),
            timestamp=now,
        )
    span.end(end_time=now + 1000)
    return list(ended)


def read_start(config: Config, task: str) -> int | None:
    try:
        return int(json.loads(state_file(config, task).read_text())["started_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_part(uri: Any) -> str | None:
    return str(uri).rstrip("/").rsplit("/", 1)[-1] or None if uri else None
