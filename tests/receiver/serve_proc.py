"""`spanvisor serve` as a real subprocess, the fake Slack on its own thread,
and a deadline-bound wait for conditions (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.waiting import wait_until


class FakeSlackThread:
    def __init__(self, **kw: Any) -> None:
        from tests.fakes.slack_api import FakeSlack

        self.fake = FakeSlack(**{"channel_rate": 500, "channel_burst": 500, **kw})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.base_url = asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """Read the fake's records on its own loop (it appends to them there)."""

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def hold(self) -> None:
        """The fake answers nothing until :meth:`release`."""
        self.on_loop(self.fake.hold)

    def release(self) -> None:
        self.on_loop(self.fake.release)

    def parent_posts(self) -> int:
        """chat.postMessage calls that created a parent (no thread_ts, not a
        channel's board: its metadata says ``spanvisor_board``), ok or not."""

        def parent(args: dict[str, Any]) -> bool:
            return not args.get("thread_ts") and "spanvisor_board" not in str(args.get("metadata") or "")

        return int(self.on_loop(lambda: sum(1 for c in self.fake.calls_to("chat.postMessage") if parent(c.args))))

    def parents(self) -> list[Any]:
        return list(self.on_loop(self.fake.parents))

    def chat_calls(self) -> int:
        return int(self.on_loop(lambda: sum(1 for c in self.fake.calls if c.method.startswith("chat."))))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def console_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A `serve` of its own: none of the caller's SPANVISOR_/SLACK_/OTEL_
    settings, the console sink, loopback, any free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "SLACK_", "OTEL_"))}
    env.update(
        SPANVISOR_DATA_DIR=str(data_dir),
        SPANVISOR_SINKS="console",
        SPANVISOR_OTLP_BIND="127.0.0.1",
        SPANVISOR_OTLP_HTTP_PORT="0",
        SPANVISOR_OTLP_GRPC_PORT="0",
        SPANVISOR_ADMIN_PORT="0",
        **extra,
    )
    return env


def slack_env(data_dir: Path, slack_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SPANVISOR_DATA_DIR": str(data_dir),
        "SLACK_BOT_TOKEN": "xoxb-serve-test",
        "SPANVISOR_SLACK_CHANNEL": "#agents",
        "SPANVISOR_SLACK_BASE_URL": slack_url,
        "SPANVISOR_OTLP_BIND": "127.0.0.1",
        "SPANVISOR_OTLP_HTTP_PORT": "0",
        "SPANVISOR_OTLP_GRPC_PORT": "0",
        "SPANVISOR_ADMIN_PORT": "0",
        "SPANVISOR_SHUTDOWN_TIMEOUT": "15s",
        # The fake allows 500 posts/s; Slack's real ~1/s pacing would make
        # 100 parents take 100 s.
        "SPANVISOR_SLACK_CHANNEL_INTERVAL": "10ms",
        "SPANVISOR_SLACK_UPDATE_INTERVAL": "200ms",
        "SPANVISOR_SLACK_REPLY_INTERVAL": "10ms",
        **extra,
    }


# How much of each serve log a failed test shows.
LOG_TAIL = 6000


class ServeProcess:
    """One `spanvisor serve` on a data dir; each start writes a new log file."""

    def __init__(self, data_dir: Path, env: dict[str, str], start: bool = True) -> None:
        self.data_dir = data_dir
        self.env = env
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def log(self) -> Path:
        return self.logs[-1]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        data = Path(self.env.get("SPANVISOR_DATA_DIR") or self.data_dir)
        _seed_price_table(data)
        log = self.data_dir / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        # The suite's serves run open on loopback (SPANVISOR_OPEN) unless the
        # test says otherwise: the token serve makes at its first start has
        # its own tests (test_first_start_token.py).
        env = {"SPANVISOR_OPEN": "1", **self.env}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spanvisor.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

        def serving() -> re.Match[str] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log_text()}")
            return re.search(r"http=(\d+) grpc=(\d+) admin=(\d+)", self.log_text())

        m = wait_until(serving, timeout, "serve to listen")
        self.http, self.grpc, self.admin = (int(m.group(i)) for i in (1, 2, 3))
        _keep_price_table(data)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}/v1/traces"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful stop: drain, then exit); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.alive:
            try:
                self.terminate(60)
            except subprocess.TimeoutExpired:
                self.kill()
        # Captured by pytest and shown only when the test failed: what serve
        # said is the first thing to read then.
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            print(f"--- {log.name}, its last {LOG_TAIL:,} characters ---\n{text[-LOG_TAIL:]}")


# The price table's cache file (spanvisor.tracking.pricecache) one serve of
# this process wrote, copied into each new data dir before its serve starts:
# that serve reads it as a restarted one would, instead of starting the
# table's child (about 0.4 s of CPU: Python and genai-prices' import), some
# sixty times a run. serve checks the file's key against what is installed
# and reads genai-prices again when it does not match; the child's own path
# and the cache's are tests/core/test_pricecache.py's and test_pricetable.py's.
_PRICE_TABLE: list[bytes] = []


def _seed_price_table(data: Path) -> None:
    from spanvisor.tracking import pricecache

    target = data / pricecache.FILE_NAME
    if _PRICE_TABLE and not target.exists():
        try:
            data.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_PRICE_TABLE[0])
        except OSError:
            pass  # a data dir the test made unwritable: serve reads genai-prices as it would


def _keep_price_table(data: Path) -> None:
    from spanvisor.tracking import pricecache

    if not _PRICE_TABLE:
        try:
            _PRICE_TABLE.append((data / pricecache.FILE_NAME).read_bytes())
        except OSError:
            pass  # not written (yet): a later serve's is kept


def db_rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of one query against serve's PostgreSQL, from a sync test."""
    import asyncpg

    async def q() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(q())


def message_text(msg: Any) -> str:
    """All a Slack message shows (text, blocks, attachments), as one string."""
    import json

    return json.dumps({"text": msg.text, "blocks": msg.blocks, "attachments": msg.attachments}, ensure_ascii=False)


def post(url: str, body: bytes, timeout: float = 15) -> bool:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
