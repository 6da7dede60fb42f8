"""``spanvisor emit``: task start, checkpoints, artifacts and finish from a shell.

Each call is a separate process, yet they must form one task. So ids are
derived from the task id, never random:

* trace id = blake2b("spanvisor.trace", T)[:16], root span id =
  blake2b("spanvisor.root", T)[:8]: every call for task T lands in the same
  trace, under the same root.
* ``start``, ``checkpoint`` and ``artifact`` each send one short child span of
  that root, stamped with ``agent.task.id`` and ``agent.task.root_span_id``
  (what the in-process processor stamps), so the tracker attributes them to
  the task at once, before the root exists, on any replica. None of them
  sets ``agent.status`` unless asked (``checkpoint --status``): the status
  is inferred, ``starting`` until the first change, then ``working``.
* ``approval`` sends an ``agent.approval.request`` on a child span, waits
  for a person's answer on the control API, then sends the answer back as
  ``agent.approval.decision`` (:mod:`spanvisor.cli.emit_approval`).
* ``start`` also sends an ``agent.task.start`` log record in the root's
  context, and ``heartbeat`` an ``agent.task.heartbeat``
  (:mod:`spanvisor.cli.emit_live`): OTLP carries the root only at
  ``finish``, and these make the task live meanwhile (never put aside as a
  partial task; stalled when the shell agent goes silent, lost if it never
  finishes).
* ``finish`` sends the root span itself (same stamp, ``agent.status``, ERROR
  status on failure), which closes the task. Its start time comes from the
  ``start`` call, kept in ``<data_dir>/emit/``, or ``--started-ns``.

Spans go out through the real OTLP exporter (HTTP by default, ``--protocol
grpc``), honouring the standard ``OTEL_EXPORTER_OTLP_*`` variables. The exit
status says whether the receiver accepted them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spanvisor.config import Config
from spanvisor.spans import conventions as cv

OUTCOMES = ("complete", "error", "cancelled")


def task_ids(task: str) -> tuple[int, int]:
    """(trace id, root span id) of task ``task``: the same in every process."""

    def h(kind: str, size: int) -> int:
        n = int.from_bytes(hashlib.blake2b(f"{kind}\x1f{task}".encode(), digest_size=size).digest(), "big")
        return n or 1  # all-zero ids are invalid in OTLP

    return h("spanvisor.trace", 16), h("spanvisor.root", 8)


def _state_file(config: Config, task: str) -> Path:
    digest = hashlib.blake2b(task.encode(), digest_size=8).hexdigest()
    return config.data_dir / "emit" / f"{digest}.json"


def _exporter(args: argparse.Namespace) -> Any:
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        endpoint = (
            args.endpoint
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        )
        return Grpc(endpoint=endpoint, headers=headers, timeout=args.timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    endpoint = args.endpoint
    if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return Http(endpoint=endpoint, headers=headers, timeout=args.timeout)


def _attrs(**kw: Any) -> dict[str, Any]:
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
    stamp = _attrs(**{cv.TASK_ID: args.task, cv.TASK_ROOT: root_hex, cv.AGENT_ID: args.agent})
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
        start = opt("started_ns") or _read_start(config, args.task) or now
        attrs = {**stamp, **_attrs(**{cv.TASK_NAME: opt("name"), cv.STATUS: opt("status"), cv.MESSAGE: opt("message")})}
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
            **_attrs(
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
        state = _attrs(
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
            _attrs(
                **{
                    cv.APPROVAL_ID: opt("approval_id"),
                    cv.APPROVAL_QUESTION: opt("question") if kind == "approval" else None,
                    cv.APPROVAL_TIMEOUT_S: float(opt("wait")) if kind == "approval" and opt("wait") else None,
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
            _attrs(
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


def _read_start(config: Config, task: str) -> int | None:
    try:
        return int(json.loads(_state_file(config, task).read_text())["started_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_part(uri: Any) -> str | None:
    return str(uri).rstrip("/").rsplit("/", 1)[-1] or None if uri else None


def handler(args: argparse.Namespace, config: Config) -> int:
    from opentelemetry.sdk.trace.export import SpanExportResult

    if args.kind == "artifact" and not (args.name or args.uri):
        print("spanvisor emit artifact: give --name, --uri or both", file=sys.stderr)
        return 2
    now = time.time_ns()
    if args.kind in ("start", "heartbeat"):
        from spanvisor.cli import emit_live

        trace_id, root_id = task_ids(args.task)
        said = {
            cv.TASK_ID: args.task,
            **_attrs(
                **{
                    cv.AGENT_ID: args.agent,
                    cv.TASK_NAME: getattr(args, "name", None),
                    cv.REPO: getattr(args, "repo", None),
                    cv.AGENT_NAME: getattr(args, "agent_name", None),
                }
            ),
        }
        name = cv.LIVE_TASK_START if args.kind == "start" else cv.LIVE_HEARTBEAT
        service = os.environ.get("OTEL_SERVICE_NAME") or "spanvisor-emit"
        if not emit_live.send(args, service, trace_id, root_id, name, said, now):
            print(f"spanvisor emit: the receiver did not accept the {name} record (see the log above)", flush=True)
            if args.kind == "heartbeat":
                return 1
        if args.kind == "heartbeat":
            return 0
    spans = build_spans(args, config, now)
    exporter = _exporter(args)
    try:
        ok = exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    if not ok:
        print("spanvisor emit: the receiver did not accept the span (see the log above)", flush=True)
        return 1
    path = _state_file(config, args.task)
    try:
        if args.kind == "start":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"task": args.task, "started_ns": now}))
            trace_id, root_id = task_ids(args.task)
            print(f"task={args.task} trace_id={trace_id:032x} root_span_id={root_id:016x}")
        elif args.kind == "finish":
            path.unlink(missing_ok=True)
    except OSError:
        pass  # the start time is a nicety; the spans went out
    return 0


def register(subparsers: Any) -> None:
    emit = subparsers.add_parser("emit", help="send a task start, checkpoint, artifact or finish as OTLP")
    kinds = emit.add_subparsers(dest="kind", metavar="KIND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True, help="task id; the same id joins calls into one task")
        p.add_argument("--agent", help="agent id (agent.id)")
        p.add_argument("--endpoint", help="OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT or localhost)")
        p.add_argument(
            "--protocol",
            choices=("http/protobuf", "grpc"),
            default=os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            if os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") in ("http/protobuf", "grpc")
            else "http/protobuf",
        )
        p.add_argument(
            "--token",
            default=os.environ.get("SPANVISOR_OTLP_TOKEN"),
            help="bearer token (default: $SPANVISOR_OTLP_TOKEN)",
        )
        p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
        p.set_defaults(func=handler)

    start = kinds.add_parser("start", help="a task starts")
    common(start)
    start.add_argument("--name", help="task name (agent.task.name)")
    start.add_argument("--repo", help="repository or scope (agent.repo)")
    start.add_argument("--agent-name", help="agent display name (agent.name)")
    start.add_argument("message", nargs="?", help="first message")

    cp = kinds.add_parser("checkpoint", help="progress, a step or a status change")
    common(cp)
    cp.add_argument("--progress", type=float, help="percent, 0-100")
    cp.add_argument("--step", help="current step")
    cp.add_argument("--status", choices=cv.STATUSES)
    cp.add_argument("--tokens", type=int, help="context-window tokens in use")
    cp.add_argument("--limit", type=int, help="context-window size")
    cp.add_argument("message", nargs="?", help="what just happened")

    art = kinds.add_parser("artifact", help="the task produced something")
    common(art)
    art.add_argument("--name", help="default: the last part of --uri")
    art.add_argument("--uri")
    art.add_argument("--kind", dest="artifact_kind")

    beat = kinds.add_parser("heartbeat", help="the task is still alive (no progress to report)")
    common(beat)

    fin = kinds.add_parser("finish", help="the task ends")
    common(fin)
    fin.add_argument("--status", choices=OUTCOMES, default="complete")
    fin.add_argument("--name", help="task name (agent.task.name)")
    fin.add_argument("--error", help="error message (status error)")
    fin.add_argument("--started-ns", type=int, help="start time (default: from 'emit start')")
    fin.add_argument("message", nargs="?", help="final message")

    from spanvisor.cli import emit_approval

    appr = kinds.add_parser(
        "approval", help="ask a person and wait for the answer (exit 0 approved, 1 rejected, 2 timed out)"
    )
    common(appr)
    emit_approval.add_arguments(appr)


def main(argv: Sequence[str]) -> int:
    """For tests: parse ``emit ...`` arguments and run."""
    parser = argparse.ArgumentParser(prog="spanvisor")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    result: int = args.func(args, Config.load())
    return result
