"""The webhook tests' parts: a real aiohttp receiver on loopback that checks
every request with ``spanvisor_webhook.verify``, and real pipelines.

Until pyproject.toml lists the package (the lead's file), ``plugins/`` is put
on ``sys.path`` and the sink's settings are passed to ``Config.load``; once it
is installed, both come from the installed package and its entry point.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("spanvisor_webhook") is None:
    sys.path.insert(0, str(ROOT / "plugins"))

from aiohttp import web  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import Span, Status, StatusCode  # noqa: E402

from spanvisor.config import Config, plugin_settings  # noqa: E402
from spanvisor.control.hub import Verdict  # noqa: E402
from spanvisor.events import Action, Decision  # noqa: E402
from spanvisor.otel.processor import SpanvisorSpanProcessor  # noqa: E402
from spanvisor.pipeline.pipeline import Pipeline  # noqa: E402
from spanvisor.testing import InMemorySink  # noqa: E402
from spanvisor_webhook import WebhookSink, verify  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

SECRET = "whsec-3f9a7c1e0b2d4a6f8e1c3b5d7f9a0c2e"


def free_port() -> int:
    """A loopback port nothing listens on (until the receiver opens it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def intervention_id(self) -> str | None:
        return self.headers.get("X-Spanvisor-Intervention-Id")


class Receiver:
    """An orchestrator's endpoint: verifies, records, answers from a script.

    ``answers`` are (status, headers) given to the next requests in order,
    then ``default``. A request that does not verify gets 401, whatever the
    script says. Runs its own loop in a thread: the tests are synchronous.
    """

    def __init__(self, secret: str = SECRET, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.requests: list[Seen] = []
        self.answers: deque[tuple[int, dict[str, str]]] = deque()
        self.default = 200
        # Set ``holding`` and the next request waits, once it has ``arrived``,
        # until ``released`` (an attempt the sender is in the middle of).
        self.holding = False
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._runner: web.AppRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Seen]:
        return [r for r in self.requests if r.verified and 200 <= r.status < 300]

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def open(self) -> Receiver:
        self._run(self._open())
        return self

    def close_port(self) -> None:
        if self._runner is not None:
            self._run(self._runner.cleanup())
            self._runner = None

    def stop(self) -> None:
        self.close_port()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.holding:
            self.holding = False
            self.arrived.set()
            while not self.released.is_set():
                await asyncio.sleep(0.01)
        h = request.headers
        ok = verify(self.secret, h.get("X-Spanvisor-Timestamp"), body, h.get("X-Spanvisor-Signature"))
        status, headers = self.answers.popleft() if self.answers else (self.default, {})
        if not ok:
            status, headers = 401, {}
        self.requests.append(Seen(time.monotonic(), dict(h), body, ok, status))
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "no")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().open()
    yield r
    r.stop()


def webhook_config(env: dict[str, str]) -> Config:
    extra = plugin_settings()
    if not any(s.name == "webhook_url" for s in extra):
        extra = [*extra, *WebhookSink.settings]
    return Config.load(env=env, extra=extra)


@dataclass
class Running:
    pipeline: Pipeline
    sink: WebhookSink
    memory: InMemorySink
    tracer: Any

    def decide(self, task_id: str, action: Action, intervention_id: str, **kw: Any) -> Verdict:
        d = Decision(intervention_id, task_id, action, kw.pop("actor_id", "U1"), time.time_ns(), **kw)
        return asyncio.run(self.pipeline.control.decide(d))

    def failed_task(self, task_id: str, name: str = 'Deploy <prod> & "friends"') -> None:
        """A task that ended in error (so a retry of it is applied)."""
        attrs = {"agent.task.id": task_id, "agent.task.name": name, "agent.id": "deployer"}
        with self.tracer.start_as_current_span("deploy", attributes=attrs) as root:
            root.set_status(Status(StatusCode.ERROR, "boom"))
        assert self.pipeline.force_flush(10)

    @contextmanager
    def running_task(self, task_id: str) -> Iterator[Span]:
        attrs = {"agent.task.id": task_id, "agent.task.name": "Crawl", "agent.id": "crawler"}
        with self.tracer.start_as_current_span("crawl", attributes=attrs) as root:
            wait_until(lambda: any(e.task_id == task_id for e in self.memory.events), what="the task's start")
            yield root

    def dropped(self, reason: str) -> float:
        return self.pipeline.stats.value("dropped_total", reason=reason, sink="webhook")


@pytest.fixture
def start_pipeline(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    made: list[Running] = []

    def start(url: str, secret: str = SECRET, data_dir: Path | None = None, **env: str) -> Running:
        cfg = webhook_config(
            {
                "SPANVISOR_DATA_DIR": str(data_dir or tmp_path),
                "SPANVISOR_WEBHOOK_URL": url,
                "SPANVISOR_WEBHOOK_SECRET": secret,
                "SPANVISOR_WEBHOOK_TIMEOUT": "2s",
                **env,
            }
        )
        sink, memory = WebhookSink(), InMemorySink()
        pipeline = Pipeline(cfg, sinks=[sink, memory]).start()
        assert pipeline.wait_ready(10)
        provider = TracerProvider()
        provider.add_span_processor(SpanvisorSpanProcessor(pipeline=pipeline))
        running = Running(pipeline, sink, memory, provider.get_tracer("webhook-test"))
        made.append(running)
        return running

    yield start
    for r in made:
        r.pipeline.shutdown(5)
