"""``spanvisor deadletter list|retry``: see and re-deliver events a sink set aside.

``retry`` builds each sink the way the pipeline does (the configured
instance when config runs that sink, else the class from its entry point),
gives it the same context (state store, replica identity), starts it, and
exports each chosen event alone, in the order they were set aside. An event
leaves the store only when its sink answers ``SUCCESS`` (for a durable sink
that may mean "in its outbox"); anything else keeps it there with the newest
error. The exit code is 0 when every chosen event was delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from spanvisor.config import Config
from spanvisor.pipeline.deadletter import DeadLetter, DeadLetterStore, store_dir
from spanvisor.sink import Sink, SinkContext, SinkResult

# Per sink: start, then force_flush and shutdown, each within this.
RETRY_SINK_TIMEOUT_S = 30.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("deadletter", help="list or retry events a sink set aside after failing on them")
    sub = p.add_subparsers(dest="deadletter_command", metavar="ACTION", required=True)
    ls = sub.add_parser(
        "list", help="the set-aside events, oldest first, then the events outboxes hold and for which destination"
    )
    ls.add_argument("--sink", help="only this sink's")
    ls.add_argument("--json", action="store_true", help="one JSON object per line, with the event itself")
    ls.set_defaults(func=cmd_list)
    rt = sub.add_parser("retry", help="deliver set-aside events through their sink again")
    rt.add_argument("--sink", help="only this sink's")
    rt.add_argument("--id", type=int, action="append", dest="ids", metavar="ID", help="only this entry (repeatable)")
    rt.set_defaults(func=cmd_retry)


def _store(config: Config) -> DeadLetterStore:
    return DeadLetterStore(store_dir(config.data_dir))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.cli.check import table as _table

    store = _store(config)
    try:
        entries = store.entries(sink=args.sink)
    finally:
        store.close()
    if args.json:
        for e in entries:
            print(
                json.dumps(
                    {
                        "id": e.id,
                        "sink": e.sink,
                        "event_id": e.event_id,
                        "task_id": e.task_id,
                        "kind": e.kind,
                        "error": e.error,
                        "attempts": e.attempts,
                        "set_aside_at": e.set_aside_at,
                        "event": e.body,
                    }
                )
            )
        return 0
    if not entries:
        print(f"no dead letters{f' for sink {args.sink}' if args.sink else ''} in {store.path}")
    else:
        rows = [
            (str(e.id), e.sink, _when(e.set_aside_at), e.kind, e.task_id, e.event_id, str(e.attempts), _clip(e.error))
            for e in entries
        ]
        print(_table(rows, ("id", "sink", "set aside", "kind", "task", "event", "attempts", "error")))
    _held(config, args.sink)
    return 0


def _held(config: Config, sink: str | None) -> None:
    """What sinks' outboxes hold, and for which destination: the events of
    one no longer configured wait there, never sent elsewhere."""
    from spanvisor.cli.check import table as _table
    from spanvisor.pipeline.outbox_destination import held_in

    held = [(name, h) for name, h in held_in(config.data_dir / "outbox") if sink is None or name == sink]
    if not held:
        return
    print()
    print("Held in outboxes (each sink delivers only its own destination's, when that is configured):")
    rows = [
        (name, h.label or "(not recorded: an outbox from before destinations were)", str(h.events), str(h.path))
        for name, h in held
    ]
    print(_table(rows, ("sink", "waiting for", "events", "file")))


def cmd_retry(args: argparse.Namespace, config: Config) -> int:
    from spanvisor.cli.check import table as _table

    store = _store(config)
    try:
        entries = store.entries(sink=args.sink, ids=args.ids or ())
        if not entries:
            print("nothing to retry")
            return 0
        by_sink: dict[str, list[DeadLetter]] = {}
        for e in entries:
            by_sink.setdefault(e.sink, []).append(e)
        results: list[tuple[DeadLetter, str]] = []
        for name, group in by_sink.items():
            results += asyncio.run(_retry_sink(config, name, group, store))
    finally:
        store.close()
    print(_table([(str(e.id), e.sink, e.kind, e.task_id, e.event_id, r) for e, r in results], _HEADER))
    delivered = sum(r == "delivered" for _, r in results)
    print(f"\n{delivered} of {len(results)} delivered and removed from the store")
    return 0 if delivered == len(results) else 1


_HEADER = ("id", "sink", "kind", "task", "event", "result")


def _sink_named(config: Config, name: str) -> Sink:
    from spanvisor.pipeline.assemble import build_sinks
    from spanvisor.sink import load_sink_class

    try:
        for sink in build_sinks(config):
            if getattr(sink, "name", None) == name:
                return sink
    except Exception:  # another configured sink is broken: build this one alone
        pass
    sink_cls = load_sink_class(name)
    instance: Sink = sink_cls()
    return instance


async def _retry_sink(
    config: Config, name: str, entries: Sequence[DeadLetter], store: DeadLetterStore
) -> list[tuple[DeadLetter, str]]:
    from spanvisor.pipeline.assemble import open_state_store, replica_id
    from spanvisor.stats import PipelineStats

    try:
        sink = _sink_named(config, name)
    except Exception as exc:
        return [(e, f"sink unavailable: {_clip(str(exc))}") for e in entries]
    shared: dict[str, Any] = {}
    state = await open_state_store(config, [sink], shared)
    ctx = SinkContext(
        config=config, state_store=state, stats=PipelineStats(), shared=shared, replica_id=replica_id(config, "cli")
    )
    try:
        return await _deliver_each(sink, ctx, entries, store)
    finally:
        try:
            await asyncio.wait_for(sink.shutdown(RETRY_SINK_TIMEOUT_S), RETRY_SINK_TIMEOUT_S + 1)
        except Exception as exc:
            print(f"sink {name}: shutdown failed: {exc}")
        try:
            await state.close()
        except Exception as exc:
            print(f"state store close failed: {exc}")


async def _deliver_each(
    sink: Sink, ctx: SinkContext, entries: Sequence[DeadLetter], store: DeadLetterStore
) -> list[tuple[DeadLetter, str]]:
    try:
        await asyncio.wait_for(sink.start(ctx), RETRY_SINK_TIMEOUT_S)
    except Exception as exc:
        return [(e, f"sink did not start: {_clip(f'{type(exc).__name__}: {exc}')}") for e in entries]
    results: list[tuple[DeadLetter, str]] = []
    for e in entries:
        try:
            result = await sink.export([e.event()])
            outcome = "delivered" if result is SinkResult.SUCCESS else f"not delivered: {result.value}"
        except Exception as exc:
            outcome = f"raised: {_clip(f'{type(exc).__name__}: {exc}')}"
        if outcome == "delivered":
            await asyncio.to_thread(store.remove, [e.id])
        else:  # keeps its place; the row takes the newest error
            await asyncio.to_thread(store.add, e.sink, e.event(), outcome, 1)
        results.append((e, outcome))
    try:
        await asyncio.wait_for(sink.force_flush(RETRY_SINK_TIMEOUT_S), RETRY_SINK_TIMEOUT_S + 1)
    except Exception as exc:
        print(f"sink {getattr(sink, 'name', '?')}: force_flush failed: {exc}")
    return results
