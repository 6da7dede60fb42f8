"""spanvisor beside its peers: the same OTLP bytes into ``spanvisor serve``,
Arize Phoenix and MLflow, each one's persisted spans counted in its own store.

    .venv/bin/python benchmarks/bench_peers.py [--seconds 8] [--rounds 2] [--quick]
    make bench-peers          # the same, after installing every peer environment

Each peer runs from an environment of its own under ``.bench-peers/<name>/``,
installed from PyPI at a pinned version the first time (``_peers/envs.py``;
several minutes, printed as it goes) and kept. Everything is on loopback.

The servers, each at its defaults, started once and kept for the run:

* ``spanvisor serve`` as ``bench_e2e.py`` starts it (``SPANVISOR_SINKS=
  postgres``, the embedded PostgreSQL, fsync on);
* Arize Phoenix, ``phoenix serve`` (SQLite in ``PHOENIX_WORKING_DIR``);
* MLflow, ``mlflow server`` (SQLite backend store, four workers; it prices
  each model call from the price catalogue inside its package, offline),
  with one setting changed: uvicorn's worker healthcheck at 60 s, not 5
  (``_peers/servers.py`` says why).

About 17 minutes on a loaded 2-core machine at the defaults, most of it
Phoenix draining its queue (tens of spans/s); the installs add several
minutes the first time.

The payload is ``bench_e2e.py``'s heaviest: all agent spans
(``_payloads.py``: a template made with the real SDK and OTLP encoder,
copied with fresh trace, span and task ids per request). In a round every
server is sent the **same bodies** (the same bytes, in the same order),
one server at a time, for ``--seconds``; rounds alternate the order. Each
client POSTs and waits for the answer, honouring ``Retry-After`` on a 503
(1 s when there is none), as a Collector does; every 503 is counted.

Persisted spans/s = acknowledged spans over the time from the first POST
until every one is persisted: for Phoenix and MLflow their rows in the
``spans`` table of their SQLite store (one a span); for spanvisor every
row they cause in PostgreSQL (each task's finished ``agent_tasks`` row and
every timeline row, counted beforehand through the tracker, as
``bench_e2e.py`` does: spanvisor keeps a task's timeline, not a row a
span). Phoenix answers before it persists, so its figure is the rate at
which its queue drains. CPU per persisted span: the CPU of the server's
whole process tree over that time (MLflow's workers; spanvisor's serve
and its PostgreSQL) over the spans.

Printed: each round's figures, then per server the median over rounds and
the ratio of spanvisor's to each peer's within each round. Only figures of
this run are printed; none is carried from another run.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks")]

import bench_e2e  # noqa: E402
from _cpuwatch import postmaster_of  # noqa: E402
from _payloads import MIXES, Template, check_unique  # noqa: E402
from _peers import envs  # noqa: E402
from _peers.cpu import tree_cpu, used  # noqa: E402
from _peers.servers import Server, start_mlflow, start_phoenix  # noqa: E402
from _rowcount import Counter  # noqa: E402
from spanvisor_postgres.embedded import EmbeddedPostgres  # noqa: E402

SPANVISOR = "spanvisor"
# One round's ids: bodies of round r are numbered from r * ROUND_IDS + 1;
# the warm-up's from WARM_IDS + 1 (task ids hold 8 digits: _payloads).
ROUND_IDS = 100_000
WARM_IDS = 90_000_000
# Bodies each server is sent before the rounds, and their rows waited for:
# a server's first requests import what handling them needs (in each of
# MLflow's four workers), which is start-up, not ingest.
WARM_BODIES = 4


class Progress(Protocol):
    """How much of one measurement's acknowledged spans is persisted."""

    def check(self, bodies: int) -> tuple[bool, int]:
        """(all spans of the first ``bodies`` persisted, spans persisted so far)."""
        ...

    def close(self) -> None: ...


@dataclass
class Target:
    """One server as the rounds see it."""

    name: str
    url: str
    headers: dict[str, str]
    cpu_roots: list[int]
    # (first body number, past the last) -> its progress, made before sending
    progress: Callable[[int, int], Progress]


def post(url: str, headers: dict[str, str], body: bytes, stop_at: float) -> tuple[bool, int, int]:
    """POST until acknowledged, as a Collector would: honouring Retry-After
    on a 503 (1 s without one), and sending again after 1 s when the
    connection drops before an answer. (acknowledged, 503s, dropped
    connections); gives up once ``stop_at`` passes."""
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf", **headers}
    )
    refused = dropped = 0
    while True:
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                resp.read()
                if resp.status == 200:
                    return True, refused, dropped
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503):
                raise RuntimeError(f"{url} answered {exc.code}: {exc.read()[:300]!r}") from exc
            refused += 1
            pause = float(exc.headers.get("Retry-After") or 1)
        except (http.client.RemoteDisconnected, ConnectionResetError):
            dropped += 1
            pause = 1.0
        if time.monotonic() + pause > stop_at:
            return False, refused, dropped
        time.sleep(pause)


def measure(
    target: Target, bodies: list[bytes], first: int, spans_per_body: int, a: argparse.Namespace
) -> dict[str, float]:
    lock = threading.Lock()
    state = {"next": 0, "acked": 0, "refused": 0, "dropped": 0}
    progress = target.progress(first, first + len(bodies))
    cpu_from = tree_cpu(target.cpu_roots)
    t0 = time.monotonic()
    stop_at = t0 + a.seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if state["next"] >= len(bodies):
                    return
                body = bodies[state["next"]]
                state["next"] += 1
            ok, refused, dropped = post(target.url, target.headers, body, stop_at)
            with lock:
                state["refused"] += refused
                state["dropped"] += dropped
                state["acked"] += ok
            if not ok:
                return

    threads = [threading.Thread(target=client) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent_s = time.monotonic() - t0
    acked = state["acked"]
    try:
        done, spans = progress.check(acked)
        while not done and time.monotonic() - t0 < a.seconds + a.drain_limit:
            time.sleep(0.2)
            done, spans = progress.check(acked)
        persisted_s = time.monotonic() - t0
        cpu_s = used(cpu_from, tree_cpu(target.cpu_roots))
    finally:
        progress.close()
    return {
        "acked": acked * spans_per_body,
        "persisted": spans,
        "complete": float(done),
        "sent_s": sent_s,
        "persisted_s": persisted_s,
        "spans_s": spans / persisted_s,
        "cpu_us": cpu_s / max(spans, 1) * 1e6,
        "cpu_cores": cpu_s / persisted_s,
        "refused": state["refused"],
        "dropped": state["dropped"],
        "unsent": len(bodies) - state["next"],
    }


class TimelineRows:
    """spanvisor's rows of one measurement in PostgreSQL: complete once every
    row the acknowledged bodies cause is visible (spanvisor keeps a task's
    timeline, not a row a span; counted through the tracker beforehand)."""

    def __init__(self, db_url: str, first: int, last: int, per_body: tuple[int, int, int]) -> None:
        self.counter = Counter(db_url, first, last)
        self.rows, self.tasks, self.spans = per_body

    def check(self, bodies: int) -> tuple[bool, int]:
        rows, done = self.counter.now()
        ok = rows >= bodies * self.rows and done >= bodies * self.tasks
        # The acknowledged spans count once every row they cause is visible.
        return ok, bodies * self.spans if ok else 0

    def close(self) -> None:
        self.counter.close()


class SpanRows:
    """A peer's rows in its ``spans`` table, one a span, since this measurement began."""

    def __init__(self, server: Server, spans_per_body: int) -> None:
        self.server, self.per_body = server, spans_per_body
        self.before = server.spans()  # the warm-up's and earlier rounds'

    def check(self, bodies: int) -> tuple[bool, int]:
        got, want = self.server.spans() - self.before, bodies * self.per_body
        return got >= want, min(got, want)

    def close(self) -> None:
        pass


def spanvisor_target(base: Path, db_url: str, tpl: Template) -> tuple[Target, Callable[[], object]]:
    """``spanvisor serve`` as bench_e2e starts it, and how to stop it."""
    proc, port = bench_e2e.serve(base / "serve", db_url, "postgres", None)
    rows, tasks = bench_e2e.rows_per_request(tpl)
    postmaster = postmaster_of(base / "postgres" / "pgdata")

    def progress(first: int, last: int) -> Progress:
        return TimelineRows(db_url, first, last, (rows, tasks, tpl.n_spans))

    def stop() -> None:
        proc.terminate()
        proc.wait(30)

    url = f"http://127.0.0.1:{port}/v1/traces"
    return Target(SPANVISOR, url, {}, [proc.pid, postmaster], progress), stop


def peer_target(server: Server, spans_per_body: int) -> Target:
    def progress(first: int, last: int) -> Progress:
        return SpanRows(server, spans_per_body)

    return Target(server.name, server.url, server.headers, [server.proc.pid], progress)


def report(results: dict[str, list[dict[str, float]]], a: argparse.Namespace, load0: float, spans: int) -> None:
    names = list(results)
    print()
    print(
        f"bench_peers: python {platform.python_version()}, {os.cpu_count()} CPUs, load {load0:.2f} at start, "
        f"{os.getloadavg()[0]:.2f} at the end; {a.rounds} round(s), {a.seconds:g} s of sending per server a round, "
        f"{a.clients} client(s); spanvisor {spanvisor_version()}, Arize Phoenix {envs.PHOENIX_VERSION}, "
        f"MLflow {envs.MLFLOW_VERSION}"
    )
    print(f"payload: {MIXES['agent'].describe()}; {spans} spans a request, the same bytes to each server")
    for r in range(a.rounds):
        print(f"round {r + 1}:")
        for name in names:
            x = results[name][r]
            flag = "" if x["complete"] else f" (INCOMPLETE after {a.drain_limit:g} s: a lower bound)"
            print(
                f"  {name:<9} {x['spans_s']:>7,.0f} spans/s persisted{flag}; {x['acked']:,.0f} spans acknowledged "
                f"in {x['sent_s']:.1f} s, all persisted after {x['persisted_s']:.1f} s; {int(x['refused'])} 503s, "
                f"{int(x['dropped'])} dropped connections; "
                f"CPU {x['cpu_us']:,.0f} µs per persisted span ({x['cpu_cores']:.2f} cores)"
            )
    print("median over the rounds:")
    for name in names:
        xs = results[name]
        print(
            f"  {name:<9} {statistics.median(x['spans_s'] for x in xs):>7,.0f} spans/s persisted, "
            f"{statistics.median(x['cpu_us'] for x in xs):,.0f} µs CPU per persisted span"
        )
    if SPANVISOR in results:
        print("spanvisor's figure over each peer's, within each round (throughput; CPU per span the other way):")
        for name in names:
            if name == SPANVISOR:
                continue
            tput = [s["spans_s"] / p["spans_s"] for s, p in zip(results[SPANVISOR], results[name], strict=True)]
            cpu = [p["cpu_us"] / s["cpu_us"] for s, p in zip(results[SPANVISOR], results[name], strict=True)]
            print(
                f"  vs {name:<7}: {statistics.median(tput):.1f}x the persisted spans/s "
                f"(rounds: {', '.join(f'{t:.1f}' for t in tput)}), "
                f"{statistics.median(cpu):.1f}x less CPU per span (rounds: {', '.join(f'{c:.1f}' for c in cpu)})"
            )


def spanvisor_version() -> str:
    import spanvisor

    return str(spanvisor.__version__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="sending time per server a round (default 8)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, alternating the order (default 2)")
    ap.add_argument("--clients", type=int, default=1, help="concurrent clients (default 1)")
    ap.add_argument("--drain-limit", type=float, default=600.0, help="seconds to wait for persistence after sending")
    ap.add_argument("--only", default="", help="comma-separated: spanvisor,phoenix,mlflow")
    ap.add_argument("--quick", action="store_true", help="a smoke run: one round of 2 s")
    ap.add_argument("--install-only", action="store_true", help="install every peer environment and stop")
    a = ap.parse_args()
    if a.install_only:
        raise SystemExit(envs.main([]))
    if a.quick:
        a.seconds, a.rounds, a.drain_limit = 2.0, 1, 300.0
    which = a.only.split(",") if a.only else [SPANVISOR, "phoenix", "mlflow"]
    load0 = os.getloadavg()[0]
    bins = {name: envs.ensure(envs.ENVS[name]) for name in which if name != SPANVISOR}
    tpl = Template(MIXES["agent"])
    check_unique(tpl.copy(1), tpl.copy(2))
    base = Path(tempfile.mkdtemp(prefix="spanvisor-bench-peers-"))
    pg = EmbeddedPostgres(base / "postgres") if SPANVISOR in which else None
    stops: list[Callable[[], object]] = []
    results: dict[str, list[dict[str, float]]] = {}
    try:
        targets: list[Target] = []
        if pg is not None:
            print("starting the embedded PostgreSQL (fsync on) and spanvisor serve …", flush=True)
            url = pg.acquire()
            asyncio.run(bench_e2e.migrated(url))
            target, stop = spanvisor_target(base, url, tpl)
            stops.append(stop)
            targets.append(target)
        started: list[Server] = []
        for name, start in (("phoenix", start_phoenix), ("mlflow", start_mlflow)):
            if name in which:
                print(f"starting {envs.ENVS[name].what} …", flush=True)
                started.append(start(bins[name], base / name))
                stops.append(started[-1].stop)
        for server in started:  # side by side: each takes a minute or two to import
            server.wait_ready()
            targets.append(peer_target(server, tpl.n_spans))
        warm = argparse.Namespace(seconds=a.drain_limit, drain_limit=a.drain_limit, clients=2)
        warm_bodies = [tpl.copy(WARM_IDS + 1 + k) for k in range(WARM_BODIES)]
        for target in targets:
            x = measure(target, warm_bodies, WARM_IDS + 1, tpl.n_spans, warm)
            print(
                f"  warm-up: {target.name}, {WARM_BODIES} requests, "
                f"{'all' if x['complete'] else 'NOT all'} persisted after {x['persisted_s']:.1f} s",
                flush=True,
            )
        results = {t.name: [] for t in targets}
        # Enough bodies for 40,000 spans/s: a server that takes them all stops early.
        count = min(3000, int(a.seconds * 40_000 / tpl.n_spans) + a.clients)
        for r in range(a.rounds):
            first = r * ROUND_IDS + 1
            bodies = [tpl.copy(first + k) for k in range(count)]
            order = targets if r % 2 == 0 else targets[::-1]
            for target in order:
                print(f"  round {r + 1}: {target.name} …", flush=True)
                x = measure(target, bodies, first, tpl.n_spans, a)
                results[target.name].append(x)
                print(
                    f"    {x['acked']:,.0f} spans acknowledged in {x['sent_s']:.1f} s, "
                    f"{'all' if x['complete'] else 'NOT all'} persisted after {x['persisted_s']:.1f} s",
                    flush=True,
                )
    finally:
        for stop in stops:
            stop()
        if pg is not None:
            pg.release()
        shutil.rmtree(base, ignore_errors=True)
    report(results, a, load0, tpl.n_spans)


if __name__ == "__main__":
    main()
