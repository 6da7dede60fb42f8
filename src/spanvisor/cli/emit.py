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
  (:mod:`spanvisor.hook.live`): OTLP carries the root only at
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
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from spanvisor.cli import emit_spans
from spanvisor.config import Config
from spanvisor.hook import live
from spanvisor.spans import conventions as cv

OUTCOMES = ("complete", "error", "cancelled")


def handler(args: argparse.Namespace, config: Config) -> int:
    from opentelemetry.sdk.trace.export import SpanExportResult

    if args.kind == "artifact" and not (args.name or args.uri):
        print("spanvisor emit artifact: give --name, --uri or both", file=sys.stderr)
        return 2
    progress = getattr(args, "progress", None)
    if progress is not None and not 0 <= progress <= 100:
        # A script's arithmetic must not fail its task: sent within range, and said.
        sent = 100.0 if progress > 100 else 0.0  # below 0, or not a number
        print(f"spanvisor emit: --progress {progress:g} is outside 0-100: sent as {sent:g}", file=sys.stderr)
        args.progress = sent
    # No token given: the local serve's own (its data dir's serve-token), for
    # a loopback endpoint only (the default one is).
    from spanvisor.gate import servetoken

    sending = servetoken.bearer(live.endpoint_of(args), args.token, say=False)  # said below, once
    if sending.refused:
        print(f"spanvisor emit: nothing sent: {sending.refused}", file=sys.stderr)
        return 1
    args.token = sending.token
    now = time.time_ns()
    if args.kind in ("start", "heartbeat"):
        trace_id, root_id = emit_spans.task_ids(args.task)
        said = {
            cv.TASK_ID: args.task,
            **emit_spans.given(
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
        if not live.send(args, service, trace_id, root_id, name, said, now):
            print(f"spanvisor emit: the receiver did not accept the {name} record (see the log above)", flush=True)
            if args.kind == "heartbeat":
                return 1
        if args.kind == "heartbeat":
            return 0
    spans = emit_spans.build_spans(args, config, now)
    try:
        exporter = live.otlp_exporter(args)
    except live.ForeignListener as exc:  # serve went away since the look above
        print(f"spanvisor emit: nothing sent: {exc}", file=sys.stderr)
        return 1
    try:
        ok = exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    if not ok:
        print("spanvisor emit: the receiver did not accept the span (see the log above)", flush=True)
        return 1
    path = emit_spans.state_file(config, args.task)
    try:
        if args.kind == "start":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"task": args.task, "started_ns": now}))
            trace_id, root_id = emit_spans.task_ids(args.task)
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
            help="bearer token (default: $SPANVISOR_OTLP_TOKEN; for a loopback endpoint, the local serve's own)",
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
        "approval",
        help="ask a person and wait for the answer (exit 0 approved, 1 rejected, 2 timed out, 3 not sent, "
        "4 not permitted, 5 cancelled)",
        epilog=emit_approval.EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
