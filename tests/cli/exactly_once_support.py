"""Real receivers in front of real pipelines, one or two (replicas) sharing a
state store (memory, the local SQLite file, PostgreSQL), and the HTTP calls
the exactly-once tests fire at them from many threads at once. Each pipeline
runs the real outputs too: the Slack sink (against the fake Slack), the
webhook sink (to a receiver that verifies each request) and the event
stream (``GET /v1/events``), beside an in-memory sink."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spanvisor.cli.main import main
from spanvisor.config import Config
from spanvisor.control.deciders import token_hash
from spanvisor.pipeline.pipeline import Pipeline
from spanvisor.receiver.server import Receiver, ReceiverSettings
from spanvisor.statestores.api import StateStore
from spanvisor.statestores.local import LocalStateStore
from spanvisor.stream.sink import StreamSink
from spanvisor.testing import InMemorySink
from spanvisor_slack import SlackSink
from spanvisor_webhook import WebhookSink
from tests.receiver.serve_proc import FakeSlackThread
from tests.waiting import wait_until
from tests.webhook.conftest import SECRET as WEBHOOK_SECRET
from tests.webhook.conftest import Receiver as WebhookReceiver

TOKEN = "otlp-s3cret"
DECIDE = "decide-s3cret"
PEOPLE = {f"p{i}": f"p{i}-own-t0ken" for i in range(12)}
ACTION = {"tool": "migrate", "arguments": {"target": "prod"}}


class Outputs:
    """The real outputs' far ends, shared by every node: one fake Slack, one
    webhook receiver."""

    def __init__(self) -> None:
        self.slack = FakeSlackThread()
        self.webhook = WebhookReceiver().open()

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": "xoxb-exactly-once",
            "SPANVISOR_SLACK_CHANNEL": "#agents",
            "SPANVISOR_SLACK_BASE_URL": self.slack.base_url,
            "SPANVISOR_SLACK_CHANNEL_INTERVAL": "10ms",
            "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
            "SPANVISOR_SLACK_REPLY_INTERVAL": "10ms",
            "SPANVISOR_WEBHOOK_URL": self.webhook.url,
            "SPANVISOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SPANVISOR_WEBHOOK_TIMEOUT": "2s",
        }

    def close(self) -> None:
        self.webhook.stop()
        self.slack.close()


class Node:
    """One ``serve``: a receiver on its own loop thread and a pipeline."""

    def __init__(
        self, data_dir: Path, deciders: Path, store: StateStore | None, outputs: Outputs | None = None, **env: str
    ) -> None:
        config = Config.load(
            env={
                "SPANVISOR_DATA_DIR": str(data_dir),
                "SPANVISOR_OTLP_BIND": "127.0.0.1",
                "SPANVISOR_OTLP_HTTP_PORT": "0",
                "SPANVISOR_OTLP_GRPC_PORT": "off",
                "SPANVISOR_ADMIN_PORT": "off",
                "SPANVISOR_OTLP_TOKEN": TOKEN,
                "SPANVISOR_DECIDE_TOKEN": DECIDE,
                "SPANVISOR_DECIDERS": str(deciders),
                "SPANVISOR_JOURNAL": "off",
                **(outputs.env() if outputs is not None else {}),
                **env,
            }
        )
        self.sink = InMemorySink()
        self.stream = StreamSink()
        sinks: list[Any] = [self.sink] if outputs is None else [self.sink, SlackSink(), WebhookSink(), self.stream]
        self.pipeline = Pipeline(config=config, sinks=sinks, path="receiver", state_store=store).start()
        assert self.pipeline.wait_ready(30)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.receiver = Receiver(self.pipeline, ReceiverSettings.from_config(config))
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)
        self.base = f"http://127.0.0.1:{self.receiver.http_port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(self.pipeline.shutdown), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def cluster(
    tmp: Path,
    kind: str,
    n: int,
    db_url: str | None = None,
    agents: dict[str, str] | None = None,
    outputs: Outputs | None = None,
) -> tuple[list[Node], Callable[[], None]]:
    """``n`` nodes on one store of ``kind``; and how to stop them (and the stores).
    ``agents``: agent id -> its own token, in the deciders file; ``outputs``:
    the real outputs' far ends, when the nodes run them."""
    deciders = tmp / "deciders.toml"
    text = "".join(f'[people.{p}]\ntoken_sha256 = "{token_hash(t)}"\n\n' for p, t in PEOPLE.items())
    text += "".join(f'[agents.{a}]\ntoken_sha256 = "{token_hash(t)}"\n\n' for a, t in (agents or {}).items())
    deciders.write_text(text)
    loops: list[asyncio.AbstractEventLoop] = []
    stores: list[LocalStateStore] = []
    nodes = []
    for i in range(n):
        env: dict[str, str] = {"SPANVISOR_REPLICA_ID": f"r{i}"}
        store: StateStore | None = None
        if kind == "local":
            # Each node's own store on the one file: two processes on one host.
            store = LocalStateStore(tmp / "state.db")
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, daemon=True).start()
            asyncio.run_coroutine_threadsafe(store.start(), loop).result(30)
            loops.append(loop)
            stores.append(store)
        elif kind == "postgres":
            assert db_url is not None
            env |= {"SPANVISOR_STATE_STORE": "postgres", "SPANVISOR_DATABASE_URL": db_url}
        nodes.append(Node(tmp / f"node{i}", deciders, store, outputs, **env))

    def stop() -> None:
        for node in nodes:
            node.close()
        for store, loop in zip(stores, loops, strict=True):
            asyncio.run_coroutine_threadsafe(store.close(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)

    return nodes, stop


def call(node: Node, method: str, path: str, body: Any = None, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{node.base}/v1/control{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Every call from its own thread, released together."""
    gate = threading.Barrier(len(calls))

    def run(fn: Callable[[], Any]) -> Any:
        gate.wait(30)
        return fn()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def ask(node: Node, task: str, aid: str, action: dict[str, Any] = ACTION) -> None:
    """The agent asks approval ``aid`` and does not wait."""
    argv = ["emit", "approval", "--task", task, "--id", aid, "--question", f"Run {aid}?"]
    main([*argv, "--action", json.dumps(action), "--wait", "0", "--endpoint", node.base, "--token", TOKEN])


def start_run(node: Node, task: str, asks: Sequence[str], action: dict[str, Any] = ACTION) -> str:
    """A run of ``task`` with the approval requests ``asks`` open; its run id."""
    endpoint = ["--endpoint", node.base, "--token", TOKEN]
    assert main(["emit", "start", "--task", task, "--agent", "sh", "--name", "deploy", *endpoint]) == 0
    for aid in asks:
        ask(node, task, aid, action)

    def opened() -> bool:
        status, doc = call(node, "GET", f"/tasks/{task}")
        return status == 200 and {a["approval_id"] for a in doc["approvals"]} >= set(asks)

    wait_until(opened, what="the requests open in the shared record", timeout=30)
    _status, doc = call(node, "GET", f"/tasks/{task}")
    return str(doc["run_id"])


def key_of(task: str, aid: str) -> str:
    """The permit secret ``spanvisor emit approval`` asked ``aid`` with (its data dir)."""
    from spanvisor.cli.emit_approval import permit_secret

    return permit_secret(Config.load(), task, aid)


def record(node: Node, task: str) -> dict[str, Any]:
    status, doc = call(node, "GET", f"/tasks/{task}")
    assert status == 200
    return doc


def granted(node: Node, task: str, grant_id: str) -> set[str]:
    """The requests of the task's run that the grant approved."""
    return {d["approval_id"] for d in record(node, task)["decisions"] if d.get("grant_id") == grant_id}
