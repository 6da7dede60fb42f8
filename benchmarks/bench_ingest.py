"""Ingest throughput of ``spanvisor serve`` (OTLP/HTTP protobuf and gRPC).

    .venv/bin/python benchmarks/bench_ingest.py [--seconds 8] [--clients 4]

Measures, in one run:

1. the ceiling: bare ``ExportTraceServiceRequest.ParseFromString``;
2. the receiver's decode (fast path for keyless spans + journal payload);
3. end to end over loopback against a real ``spanvisor serve`` subprocess
   (journal on, full pipeline and tracker, Prometheus sink), OTLP/HTTP
   protobuf and OTLP/gRPC, with pre-encoded requests so the client costs
   little; one replica, then two replicas sharing the 2 cores.

The span mix is a realistic agent trace (tests/receiver/agent_traces.py):
per task an invoke_agent root, model calls with GenAI usage, checkpoint
spans and many HTTP/database spans with no agent key (~84 % of spans).
A 2xx counts only after the journal commit, so these are acknowledged spans/s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "receiver"))

from agent_traces import request_for, task_spans  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from spanvisor.receiver.decode import decode_request  # noqa: E402


def rate(fn, n_spans: int, seconds: float = 2.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        fn()
        k += 1
    return k * n_spans / (time.perf_counter() - t0)


def make_bodies(n: int, tasks_per_request: int) -> list[tuple[bytes, int]]:
    out = []
    for i in range(n):
        spans = task_spans(tasks_per_request, seed=1000 + i)
        out.append((request_for(spans).SerializeToString(), len(spans)))
    return out


class Server:
    def __init__(self, data_dir: str) -> None:
        env = {
            **os.environ,
            "SPANVISOR_DATA_DIR": data_dir,
            "SPANVISOR_SINKS": "prometheus",
            "SPANVISOR_EMBEDDED_DB": "false",
            "SPANVISOR_OTLP_BIND": "127.0.0.1",
            "SPANVISOR_OTLP_HTTP_PORT": "0",
            "SPANVISOR_OTLP_GRPC_PORT": "0",
            "SPANVISOR_ADMIN_PORT": "0",
            "SPANVISOR_INBOX_SIZE": "400000",
        }
        self.log = Path(data_dir) / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r"http=(\d+) grpc=(\d+) admin=(\d+)", self.log.read_text())
            if m:
                self.http, self.grpc, self.admin = (int(x) for x in m.groups())
                return
            time.sleep(0.1)
        raise RuntimeError("serve did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def drive(
    kind: str, servers: list[Server], bodies: list[tuple[bytes, int]], clients: int, seconds: float
) -> tuple[float, int]:
    import grpc

    acked = [0] * clients
    retries = [0] * clients
    stop = time.monotonic() + seconds

    def http_client(i: int) -> None:
        srv = servers[i % len(servers)]
        conn = http.client.HTTPConnection("127.0.0.1", srv.http, timeout=30)
        j = i
        while time.monotonic() < stop:
            body, n = bodies[j % len(bodies)]
            j += clients
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                acked[i] += n
            else:
                retries[i] += 1
                time.sleep(0.05)

    def grpc_client(i: int) -> None:
        srv = servers[i % len(servers)]
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.grpc}")
        call = ch.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        j = i
        while time.monotonic() < stop:
            body, n = bodies[j % len(bodies)]
            j += clients
            try:
                call(body, timeout=30)
                acked[i] += n
            except grpc.RpcError:
                retries[i] += 1
                time.sleep(0.05)
        ch.close()

    target = http_client if kind == "http" else grpc_client
    threads = [threading.Thread(target=target, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(acked) / (time.monotonic() - t0), sum(retries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--tasks-per-request", type=int, default=12, help="~520 spans a request")
    a = ap.parse_args()

    bodies = make_bodies(16, a.tasks_per_request)
    body, n = bodies[0]
    keyed = decode_request(ExportTraceServiceRequest.FromString(body)).keyed
    print(f"mix: {n} spans a request, {keyed} keyed ({100 * keyed / n:.0f} %), {len(body)} bytes")
    print(
        f"bare ParseFromString           {rate(lambda: ExportTraceServiceRequest.FromString(body), n):>10,.0f} spans/s"
    )
    print(
        f"parse + decode (+journal blob) {rate(lambda: decode_request(ExportTraceServiceRequest.FromString(body)), n):>10,.0f} spans/s"
    )

    for replicas in (1, 2):
        dirs = [tempfile.mkdtemp(prefix="spanvisor-bench-") for _ in range(replicas)]
        servers = [Server(d) for d in dirs]
        try:
            for kind in ("http", "grpc"):
                got, refused = drive(kind, servers, bodies, a.clients, a.seconds)
                label = "OTLP/HTTP protobuf" if kind == "http" else "OTLP/gRPC"
                print(
                    f"{replicas} replica(s), {label:<18} {got:>10,.0f} spans/s acknowledged"
                    f" ({a.clients} clients, {refused} backpressure refusals)"
                )
        finally:
            for s in servers:
                s.stop()


if __name__ == "__main__":
    main()
