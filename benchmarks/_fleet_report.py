"""bench_fleet's report of one setup's run."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from _fleet_post import Sent

GOAL_S = 2.0
# Issue 67's goals for one shared channel: an approval request visible (p95),
# an error visible (every one), every change of every task's state shown.
ASK_GOAL_S, ERROR_GOAL_S, CURRENT_GOAL_S = 2.0, 5.0, 10.0


def pct(xs: list[float], p: float) -> float:
    """Nearest rank; a tool call never shown is +inf, slower than any shown."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1)] if xs else float("nan")


def sec(x: float) -> str:
    return "not shown" if math.isinf(x) else f"{x:.2f} s"


def report(r: dict[str, Any], sessions: int) -> None:
    sent: Sent = r["sent"]
    m: dict[str, Counter[str]] = r["metrics"]
    lat: list[float] = r["to_slack"]
    shown = sum(1 for x in lat if not math.isinf(x))
    dropped = sum(m["dropped_total"].values())
    p95 = pct(lat, 95)
    print(f"\n({r['setup']}) {sessions} sessions, {r['label']}")
    print(
        f"  OTLP answers per attempt: {dict(sorted(sent.statuses.items()))}; "
        f"{sent.unsent} records never acknowledged{'' if r['flushed'] else '; the last batches did not all go'}"
    )
    print(
        f"  serve: dropped {dropped} events {dict(m['dropped_total']) or ''}; requests {dict(m['receiver_requests_total'])}"
    )
    print(
        f"  coding-agent records {dict(m['coding_agent_records_total'])}; live records {dict(m['live_records_total'])}"
    )
    print(
        f"  PostgreSQL: {r['tasks']} tasks for {r['tasks_made']} started ({sessions} sessions); "
        f"{r['rows']:,} tool_call rows for {r['tools']:,} sent"
    )
    print(
        f"  tool call -> Slack: p50 {sec(pct(lat, 50))}, p95 {sec(p95)}, max {sec(max(lat, default=math.nan))}; "
        f"{shown:,}/{len(lat):,} shown, {r['later']:,} first shown as a later call of the session; "
        + (
            f"all shown {r['drained_s']:.1f} s after the last tool call"
            if not math.isnan(r["drained_s"])
            else "not all shown by the end of the drain"
        )
    )
    print(
        f"    of which emit -> 2xx (export delay): p50 {sec(pct(r['export'], 50))}, p95 {sec(pct(r['export'], 95))}; "
        f"2xx -> Slack: p50 {sec(pct(r['after_ack'], 50))}, p95 {sec(pct(r['after_ack'], 95))}; "
        f"{sum(1 for x in lat if x < GOAL_S) / max(1, len(lat)):.0%} within {GOAL_S:.0f} s"
    )
    print(
        "    by CLI, p95 emit -> 2xx / to Slack: "
        + ", ".join(f"{c} {sec(pct(e, 95))} / {sec(pct(t, 95))}" for c, (e, t, _) in r["by_cli"].items())
    )
    if set(r["by_cli"]) != {"claude", "codex", "gemini"}:  # the three-CLI report as it was
        for c, (e, t, k) in r["by_cli"].items():
            print(
                f"    {c}: {len(t):,} tool calls; emit -> Slack p50 {sec(pct(t, 50))}, p95 {sec(pct(t, 95))}; "
                f"emit -> 2xx p50 {sec(pct(e, 50))}, p95 {sec(pct(e, 95))}; "
                f"2xx -> Slack p50 {sec(pct(k, 50))}, p95 {sec(pct(k, 95))}"
            )
        for c, xs in r["parents"].items():
            print(
                f"    {c}: {len(xs)} launched runs; the launcher's start -> the task in Slack "
                f"p50 {sec(pct(xs, 50))}, p95 {sec(pct(xs, 95))}"
                + (f" (then nothing more until the run's exit: {r['exits']} exits)" if c == "copilot" else "")
            )
    sl: Counter[str] = r["slack"]
    refused = sum(v for k, v in sl.items() if k.endswith(" 429"))
    print(f"  Slack calls ({refused:,} 429s): " + ", ".join(f"{k} x{v}" for k, v in sorted(sl.items())))
    c = r["cpu"]
    print(
        f"  CPU while sending, cores: serve {c['serve']:.2f} (busiest thread {c['busiest']:.2f}), "
        f"PostgreSQL {c['postgres']:.2f}, this client {c['client']:.2f}; load {r['load'][0]} -> {r['load'][1]}"
    )
    ok = (
        p95 < GOAL_S and dropped == 0 and sent.unsent == 0 and r["rows"] >= r["tools"] and r["tasks"] >= r["tasks_made"]
    )
    print(f"  goal (p95 < {GOAL_S:.0f} s, nothing dropped, every record and row): {'met' if ok else 'MISSED'}")
    if r.get("supervised"):
        supervised(r["supervised"], dropped)


def figures(xs: list[float]) -> str:
    shown = sum(1 for x in xs if not math.isinf(x))
    return (
        f"p50 {sec(pct(xs, 50))}, p95 {sec(pct(xs, 95))}, max {sec(max(xs, default=math.nan))} "
        f"({shown}/{len(xs)} shown)"
    )


def supervised(s: dict[str, Any], dropped: int) -> None:
    """Issue 67's figures: approvals, errors and states as Slack showed them, and the audit trail."""
    asked, failed, current = s["asked"], s["failed"], s["current"]
    first = s.get("first_board")
    board = f", the first {first - s['t0']:.1f} s after the sessions began" if first is not None and s.get("t0") else ""
    print(
        f"  supervised: {len(asked)} approval requests (answers: {dict(Counter(s['decided']))}), "
        f"{len(failed)} errors, {len(current)} state changes; {s['board_calls']} board posts and edits{board}"
    )

    print(f"    approval request visible (board, parent or thread): {figures(asked)}")
    print(f"    approval request on its task's message, with its buttons: {figures(s['actionable'])}")
    print(f"    error visible: {figures(failed)}")
    within = sum(1 for x in current if x <= CURRENT_GOAL_S)
    print(f"    state current (anywhere): {figures(current)}; {within}/{len(current)} within {CURRENT_GOAL_S:.0f} s")
    print(
        "      by change: "
        + "; ".join(
            f"{which} p95 {sec(pct(xs, 95))}, max {sec(max(xs, default=math.nan))}"
            for which, xs in s["by_change"].items()
        )
    )
    own = s["current_parent"]
    within_own = sum(1 for x in own if x <= CURRENT_GOAL_S)
    print(
        f"    state current on its own message: {figures(own)}; {within_own}/{len(own)} within {CURRENT_GOAL_S:.0f} s"
    )
    au = s["audit"]
    print(
        f"    audit trail (PostgreSQL): {au['tasks']} tasks, {au['finals_right']}/{au['finals_of']} with their real "
        f"final state; {au['requests']}/{au['requests_made']} requests, {au['decisions']} approvals recorded; "
        f"{dropped} events dropped"
    )
    ok = (
        pct(asked, 95) <= ASK_GOAL_S
        and max(failed, default=0.0) <= ERROR_GOAL_S
        and max(current, default=0.0) <= CURRENT_GOAL_S
        and au["finals_right"] == au["finals_of"]
        and au["requests"] == au["requests_made"]
        and au["decisions"] >= au["requests_made"]
        and dropped == 0
    )
    print(
        f"  issue 67's goals (approval visible p95 <= {ASK_GOAL_S:.0f} s, every error <= {ERROR_GOAL_S:.0f} s, "
        f"every state current <= {CURRENT_GOAL_S:.0f} s, nothing lost from the audit trail): "
        + ("met" if ok else "MISSED")
    )
