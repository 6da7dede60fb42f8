"""A client that never reads is cut off once it falls a queue behind,
counted, while a client that reads sees everything and the pipeline's own
sink gets every event."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from spanvisor.events import TaskFinished
from tests.stream._sse import read, run
from tests.stream.conftest import TOKEN, kw, serve_stream, tasks
from tests.waiting import wait_until


def stalled_client(port: int) -> socket.socket:
    """Asks for the stream, then never reads: a tiny receive window, so the
    server's writes stall soon rather than after megabytes of buffers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    request = f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


def test_a_client_that_never_reads_is_cut_off_and_counted(tmp_path: Path) -> None:
    s = serve_stream(tmp_path, SPANVISOR_STREAM_CLIENT_QUEUE="20")
    try:
        port = s.receiver.receiver.http_port
        assert port is not None
        stalled = stalled_client(port)
        wait_until(lambda: s.receiver.pipeline.stats.value("stream_clients") == 1, what="the stalled client")
        start = s.head()
        n = 40

        async def go() -> int:
            reader = asyncio.ensure_future(
                read(
                    f"{s.events_url}?after={start}",
                    until=lambda f: sum(x.event == "task_finished" for x in f) >= n,
                    timeout=60,
                    **kw(),
                )
            )
            spans = tasks(n, seed=5, checkpoints=3, plain_per_step=0)
            for i in range(0, len(spans), len(spans) // 8):  # events keep coming while it stalls
                await asyncio.to_thread(s.post, spans[i : i + len(spans) // 8])
                await asyncio.sleep(0.1)
            frames, _ = await reader
            return len(frames)

        seen = run(go())
        wait_until(lambda: len(s.sink.of_type(TaskFinished)) == n, what="every task in the pipeline's sink")
        assert seen == len(s.sink.events)
        stats = s.receiver.pipeline.stats
        wait_until(lambda: stats.value("dropped_total", reason="stream_slow_client", sink="stream") == 1, what="a cut")
        # Its connection is gone: what it never read ends in an EOF or a reset.
        stalled.settimeout(10)
        try:
            while stalled.recv(65536):
                pass
        except ConnectionResetError:
            pass
        wait_until(lambda: stats.value("stream_clients") == 0, what="the slot freed")
    finally:
        s.receiver.close()
