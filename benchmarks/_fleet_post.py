"""How bench_fleet's sessions reach serve: one pool of kept-alive
connections, retrying as the OTLP exporters do, every answer counted."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

RETRYABLE = (429, 502, 503, 504)


@dataclass
class Sent:
    """What the fleet sent and how serve answered, counted per attempt."""

    statuses: Counter[str] = field(default_factory=Counter)
    records: int = 0
    requests: int = 0
    unsent: int = 0  # records of batches never acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)


class Poster:
    """POSTs to serve's /v1/logs on a kept-alive connection per worker thread,
    retrying what OTLP calls retryable after its Retry-After, as the exporters do."""

    def __init__(self, port: int, sent: Sent, workers: int, token: str | None = None) -> None:
        self.port, self.sent = port, sent
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet-post")
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return conn

    def post(self, body: bytes, ctype: str, path: str = "/v1/logs", chunked: bool = False) -> bool:
        """``chunked``: no Content-Length, the body in chunks (Qwen Code's exporter)."""
        for _ in range(6):  # bounded, like an exporter's retry budget
            status, retry_after = 0, 1.0
            try:
                conn = self._conn()
                given: bytes | Iterator[bytes] = iter((body,)) if chunked else body
                conn.request(
                    "POST", path, body=given, headers={"Content-Type": ctype, **self.auth}, encode_chunked=chunked
                )
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                retry_after = float(resp.headers.get("Retry-After") or 1)
            except (OSError, http.client.HTTPException):
                self.local.conn = None
            with self.sent.lock:
                self.sent.statuses[f"{status // 100}xx" if status not in RETRYABLE else str(status)] += 1
            if 200 <= status < 300:
                return True
            if status and status not in RETRYABLE:
                return False
            time.sleep(min(retry_after, 5.0))
        return False
