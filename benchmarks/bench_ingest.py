"""Ingest throughput of ``spanvisor serve``, every span unique.

    .venv/bin/python benchmarks/bench_ingest.py [--seconds 6] [--clients 4] [--quick]

Measures, in one run, for two payloads (``benchmarks/_payloads.py``): the
project's own mix (16 % of spans keyed) and one in which every span is an
agent span:

1. the ceiling: bare ``ExportTraceServiceRequest.FromString``;
2. the receiver's decode (``decode_request``, with the journal's payload);
3. end to end over loopback against a real ``spanvisor serve`` subprocess at
   its defaults (journal on, full pipeline and tracker; sink: Prometheus,
   which costs little, so this is the receiver and the tracker), OTLP/HTTP
   protobuf and OTLP/gRPC;
4. two replicas sharing the 2 cores against one, in alternating rounds
   (``--rounds``), the median ratio: load from elsewhere on a shared machine
   moves both sides of each round alike. Each side also says where the
   machine's cores went while sending (/proc/stat: the servers, this load
   generator, other work), and the rounds' median of spans per server
   CPU-second, two against one: a ``serve`` is bound by its one GIL, so two
   make 2x only when they get two cores, and this says whether the second
   replica costs anything per span or was only short of a core.

Every request carries fresh trace, span and task ids (a resent body would be
dropped as duplicates and measure nothing). Bodies are made before the clock
starts. Clients honour ``Retry-After`` / ``RetryInfo`` as a Collector does
and every refusal is counted.

Reported per run: spans/s **acknowledged** (2xx, after the journal commit)
while the clients send; spans/s **tracked** (the same spans over the time
until the pipeline's inbox is empty again, read from ``/metrics``: the rate
the process sustains, not only what it buffers); and the server's CPU time
per span (user + system, from ``/proc``), the figure least moved by a shared
machine.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from _payloads import MIXES, Mix, Template, check_unique
from spanvisor.receiver.decode import decode_request

# Bodies made per run: enough for this many spans/s over the run, at most
# MAX_BODIES (about 170 KB each). A run that uses them all stops early.
BODY_RATE = 150_000
MAX_BODIES = 2000


def rate(fn, n_spans: int, seconds: float = 1.5) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        fn()
        k += 1
    return k * n_spans / (time.perf_counter() - t0)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, over all cores
    (/proc/stat): what other work on a shared machine left to the run."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / hz, sum(fields) / hz


def own_cpu() -> float:
    """This process's CPU so far (every thread: the load generator)."""
    t = os.times()
    return t.user + t.system


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, data_dir: str, sinks: str = "prometheus") -> None:
        env = {
            **os.environ,
            "SPANVISOR_DATA_DIR": data_dir,
            "SPANVISOR_OPEN": "1",  # no token: the clients here send none
            "SPANVISOR_SINKS": sinks,
            "SPANVISOR_EMBEDDED_DB": "false",
            "SPANVISOR_OTLP_BIND": "127.0.0.1",
            "SPANVISOR_OTLP_HTTP_PORT": "0",
            "SPANVISOR_OTLP_GRPC_PORT": "0",
            "SPANVISOR_ADMIN_PORT": "0",
        }
        self.log = Path(data_dir) / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spanvisor.cli", "serve"],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"http=(\d+) grpc=(\d+) admin=(\d+)", self.log.read_text())
            if m:
                self.http, self.grpc, self.admin = (int(x) for x in m.groups())
                if self.ready():
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        # A serve left running would load every later figure of the run.
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("serve did not become ready:\n" + self.log.read_text())

    def ready(self) -> bool:
        """/readyz is 200: every sink started (what a load balancer waits for)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def inbox_depth(self) -> float:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        m = re.search(r"^spanvisor_inbox_depth(?:\{[^}]*\})? (\S+)$", text, re.M)
        return float(m.group(1)) if m else math.nan

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def retry_after_http(resp: http.client.HTTPResponse) -> float:
    try:
        return float(resp.getheader("Retry-After") or 1)
    except ValueError:
        return 1.0


def retry_after_grpc(err: object) -> float:
    from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]

    for key, value in getattr(err, "trailing_metadata", lambda: ())() or ():
        if key == "google.rpc.retryinfo-bin":
            d = RetryInfo.FromString(value).retry_delay
            return float(d.seconds + d.nanos / 1e9)
    return 1.0


class Run:
    """One timed run: clients share a list of unique bodies."""

    def __init__(self, bodies: list[bytes], n_spans: int, clients: int, seconds: float) -> None:
        self.bodies = bodies
        self.n_spans = n_spans
        self.clients = clients
        self.seconds = seconds
        self.next = 0
        self.lock = threading.Lock()
        self.acked = [0] * clients
        self.refused = [0] * clients
        self.exhausted = False
        self.stop_at = 0.0

    def take(self) -> bytes | None:
        with self.lock:
            if time.monotonic() >= self.stop_at:
                return None
            if self.next >= len(self.bodies):
                self.exhausted = True
                return None
            body = self.bodies[self.next]
            self.next += 1
            return body

    def backoff(self, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, self.stop_at - time.monotonic())))

    def http_client(self, i: int, srv: Server) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.http, timeout=60)
        body = self.take()
        while body is not None:
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                self.acked[i] += self.n_spans
                body = self.take()
            else:
                self.refused[i] += 1
                self.backoff(retry_after_http(resp))
                if time.monotonic() >= self.stop_at:
                    break
        conn.close()

    def grpc_client(self, i: int, srv: Server) -> None:
        import grpc

        ch = grpc.insecure_channel(f"127.0.0.1:{srv.grpc}")
        call = ch.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        body = self.take()
        while body is not None:
            try:
                call(body, timeout=60)
                self.acked[i] += self.n_spans
                body = self.take()
            except grpc.RpcError as err:
                self.refused[i] += 1
                self.backoff(retry_after_grpc(err))
                if time.monotonic() >= self.stop_at:
                    break
        ch.close()

    def drive(self, kind: str, servers: list[Server]) -> dict[str, float]:
        target = self.http_client if kind == "http" else self.grpc_client
        threads = [threading.Thread(target=target, args=(i, servers[i % len(servers)])) for i in range(self.clients)]
        cpu0 = sum(cpu_seconds(s.proc.pid) for s in servers)
        busy0, total0 = machine_busy()
        own0 = own_cpu()
        t0 = time.monotonic()
        self.stop_at = t0 + self.seconds
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent_s = time.monotonic() - t0
        busy1, total1 = machine_busy()
        own1 = own_cpu()
        cpu_sending = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu0
        # Tracked: until every accepted span has left the inbox (bounded wait).
        while time.monotonic() - t0 < self.seconds * 20 and any(s.inbox_depth() > 0 for s in servers):
            time.sleep(0.05)
        tracked_s = time.monotonic() - t0
        cpu = sum(cpu_seconds(s.proc.pid) for s in servers) - cpu0
        acked = sum(self.acked)
        return {
            "acked": acked / sent_s,
            "tracked": acked / tracked_s,
            "cpu_us": 1e6 * cpu / max(1, acked),
            "refused": sum(self.refused),
            "spans": acked,
            # While sending, in cores: the whole machine busy (of os.cpu_count()),
            # this load generator, and the servers.
            "busy_cores": (busy1 - busy0) / max(1e-9, total1 - total0) * (os.cpu_count() or 1),
            "client_cores": (own1 - own0) / sent_s,
            "server_cores": cpu_sending / sent_s,
        }


def describe(mix: Mix, tpl: Template) -> None:
    body = tpl.body
    keyed = decode_request(ExportTraceServiceRequest.FromString(body)).keyed
    print(f"\n[{mix.name}] {mix.describe()}")
    print(f"  {tpl.n_spans} spans a request, {keyed} keyed ({100 * keyed / tpl.n_spans:.0f} %), {len(body):,} bytes")
    parse = rate(lambda: ExportTraceServiceRequest.FromString(body), tpl.n_spans)
    # As serve decodes: with the body at hand, its scopes are scanned as received.
    decode = rate(lambda: decode_request(ExportTraceServiceRequest.FromString(body), body=body), tpl.n_spans)
    print(f"  bare ParseFromString              {parse:>10,.0f} spans/s")
    print(f"  parse + decode (+journal payload) {decode:>10,.0f} spans/s  ({decode / parse:.2f} of the parse)")


def measure(
    servers: list[Server], tpl: Template, first: int, kind: str, clients: int, seconds: float
) -> tuple[dict[str, float], bool, int]:
    """One timed run against ``servers``: (figures, bodies ran out, bodies made)."""
    count = min(MAX_BODIES, math.ceil(seconds * BODY_RATE * len(servers) / tpl.n_spans))
    run = Run([tpl.copy(first + k) for k in range(count)], tpl.n_spans, clients, seconds)
    return run.drive(kind, servers), run.exhausted, count


def report(name: str, replicas: int, kind: str, r: dict[str, float], exhausted: bool) -> None:
    label = "OTLP/HTTP protobuf" if kind == "http" else "OTLP/gRPC"
    print(
        f"  {name:<5} {replicas} replica(s), {label:<18} {r['acked']:>8,.0f} spans/s acknowledged, "
        f"{r['tracked']:>8,.0f} tracked, {r['cpu_us']:5.1f} CPU-µs/span, "
        f"{int(r['refused'])} refusals{' (bodies ran out)' if exhausted else ''}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="sending time per run")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--mixes", default="mix,agent", help="comma-separated: mix, agent")
    ap.add_argument("--rounds", type=int, default=3, help="alternating one-replica / two-replica rounds")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 s, HTTP only, one round")
    a = ap.parse_args()
    if a.quick:
        a.seconds, a.rounds = 2.0, 1
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start")
    print(f"spanvisor serve at defaults (journal on, sink prometheus), {a.clients} clients, {a.seconds:g} s per run")
    mixes = [MIXES[m] for m in a.mixes.split(",")]
    templates = {m.name: Template(m) for m in mixes}
    for m in mixes:
        tpl = templates[m.name]
        check_unique(tpl.copy(1), tpl.copy(2))
        describe(m, tpl)
    print()
    first = 1
    servers = [Server(tempfile.mkdtemp(prefix="spanvisor-bench-")) for _ in range(2)]
    try:
        for kind in ("http",) if a.quick else ("http", "grpc"):
            for m in mixes:
                r, out, made = measure(servers[:1], templates[m.name], first, kind, a.clients, a.seconds)
                first += made
                report(m.name, 1, kind, r, out)
        # Two replicas against one, in alternating rounds on the same two
        # servers (the second idles while one serves alone), so that load
        # from elsewhere on a shared machine hits both sides alike.
        print(f"\n  two replicas against one, OTLP/HTTP, {a.rounds} alternating rounds of {a.seconds / 2:g} s:")
        for m in mixes:
            ratios = []
            per_cpu = []
            for _ in range(a.rounds):
                pair = []
                for n in (1, 2):
                    r, _, made = measure(servers[:n], templates[m.name], first, "http", a.clients, a.seconds / 2)
                    first += made
                    pair.append(r)
                ratios.append(pair[1]["tracked"] / pair[0]["tracked"])
                per_cpu.append(pair[0]["cpu_us"] / pair[1]["cpu_us"])
                print(
                    f"    {m.name:<5} one {pair[0]['tracked']:>8,.0f}, two {pair[1]['tracked']:>8,.0f} spans/s tracked: "
                    f"{ratios[-1]:.2f}x ({int(pair[1]['refused'])} refusals)",
                    flush=True,
                )
                # Where the cores went while sending: two GIL-bound servers need
                # two cores, which the load generator and others' work share.
                for n, r in zip((1, 2), pair, strict=True):
                    print(
                        f"      {n} replica(s), while sending: machine {r['busy_cores']:.2f} of {os.cpu_count()} cores "
                        f"busy: servers {r['server_cores']:.2f}, load generator {r['client_cores']:.2f}, "
                        f"other work {r['busy_cores'] - r['server_cores'] - r['client_cores']:.2f}",
                        flush=True,
                    )
            print(f"  {m.name}: two replicas / one, median of {len(ratios)} rounds = {statistics.median(ratios):.2f}")
            # Spans per server CPU-second, two replicas against one: 1.0 when a
            # second replica costs nothing per span (no shared state to pay
            # for), so the ratio above is the cores the servers were given.
            print(f"  {m.name}: spans per server CPU-second, two / one, median = {statistics.median(per_cpu):.2f}")
    finally:
        for srv in servers:
            srv.stop()
            shutil.rmtree(srv.log.parent, ignore_errors=True)  # its data directory


if __name__ == "__main__":
    main()
