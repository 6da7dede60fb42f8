"""The gate's cost per tool call: from the CLI's spawn of ``spanvisor hook``
to its exit, as the CLI pays it, for a call a rule allows, one a rule
denies, one no rule matches (answered by ``default = "deny"``) and a
chained command, each with the receiver down (the note goes to the spool)
and up but silent (a blackhole: the note's send waits its 50 ms, then the
spool), each as a cold command hook and through the launcher's local gate
(what ``spanvisor run`` opens: here in this process), beside ``true`` (a
process that does nothing) as the floor. Interleaved: one call of each case
per round.

    .venv/bin/python benchmarks/bench_gate.py [--calls 1000] [--quick] [--spanvisor PATH]

``--spanvisor`` names the command the CLI would run. The default is this
venv's, an editable install, whose import finder costs every Python start
about 10 ms that an installed wheel does not pay; to measure what users
pay, install the wheel alone (the gate needs nothing but tree-sitter):

    python3 -m venv /tmp/gate && .venv/bin/python -m pip wheel --no-deps -w /tmp/whl .
    /tmp/gate/bin/pip install --no-deps /tmp/whl/spanvisor-*.whl tree-sitter tree-sitter-bash
    .venv/bin/python benchmarks/bench_gate.py --spanvisor /tmp/gate/bin/spanvisor

Figures: p50/p95/p99 of the wall time in ms, and the p50 over the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SPANVISOR = str(Path(sys.executable).with_name("spanvisor"))
POLICY = """default = "deny"
[[rule]]
name = "everyday"
command = ["ls", "ls *", "git status"]
decision = "allow"
[[rule]]
name = "no-rm"
command = ["rm *"]
decision = "deny"
"""
CALLS = {
    "allowed by a rule": "ls -la",
    "denied by a rule": "rm -rf build",
    "no rule (default)": "make deploy",
    "chained, allowed": "git status && ls -la | ls",
}


def blackhole() -> tuple[str, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock


def timed(argv: list[str], stdin: bytes, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 calls per case")
    ap.add_argument("--spanvisor", default=SPANVISOR, help="the spanvisor command to time (default: this venv's)")
    args = ap.parse_args()
    n = 100 if args.quick else args.calls
    tmp = Path(tempfile.mkdtemp(prefix="bench-gate-"))
    (tmp / "policy.toml").write_text(POLICY)
    hole_url, hole = blackhole()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from spanvisor.cli.run_gate import LocalGate

    gate = LocalGate()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPANVISOR_", "OTEL_"))}
    receivers = {
        "receiver down": {**base, "SPANVISOR_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        "receiver silent": {**base, "SPANVISOR_OTLP_ENDPOINT": hole_url},
    }
    for env in receivers.values():
        env["SPANVISOR_DATA_DIR"] = str(tmp / "data")
    cases: dict[str, tuple[list[str], bytes, dict[str, str]]] = {"true (floor)": (["true"], b"", base)}
    for setup in ("cold", "launcher"):
        for rname, env in receivers.items():
            for cname, command in CALLS.items():
                stdin = json.dumps({"session_id": "bench", "tool_name": "Bash", "tool_input": {"command": command}})
                argv = [args.spanvisor, "hook", "claude-code", "--policy", str(tmp / "policy.toml")]
                run_env = {**env, "SPANVISOR_GATE_SOCKET": gate.path} if setup == "launcher" else env
                cases[f"{setup}: {cname}, {rname}"] = (argv, stdin.encode(), run_env)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(n):
        for name, (argv, stdin, env) in cases.items():
            times[name].append(timed(argv, stdin, env))
        if (i + 1) % max(1, n // 10) == 0:
            print(f"  {i + 1}/{n} rounds", file=sys.stderr, flush=True)
    hole.close()
    answered = gate.answered
    gate.close()
    floor = statistics.median(times["true (floor)"])
    print(f"{'case':58} {'p50':>7} {'p95':>7} {'p99':>7}  p50 over the floor (ms)")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=100)
        p50 = statistics.median(ts)
        print(f"{name:58} {p50:7.1f} {q[94]:7.1f} {q[98]:7.1f}  {p50 - floor:7.1f}")
    spooled = len(list((tmp / "data" / "hook-spool").glob("*.json")))
    print(f"calls per case: {n}; answered by the local gate: {answered}; notes left in the spool: {spooled}")


if __name__ == "__main__":
    main()
