"""bench_fleet ``--supervised``: what a person supervising the fleet's channel needs (issue 67).

Each session of Claude Code, Codex CLI or Gemini CLI (not the launched
ones) also does what a supervised session does:

* **asks once**, at a random point of its run, as ``spanvisor hook`` asks
  (a live ``agent.approval.request`` record in the session's task, sent at
  once, its question ``Allow Bash: git push origin fl<setup><session>a?``),
  and waits: a person answers 3-8 s later through serve's control API
  (``POST /v1/control/tasks/{task}/decisions``, as ``spanvisor approve``
  does), whatever Slack shows, so every layout gets the same answers at the
  same moments; then the session goes on;
* **ends**, after 60-100 % of ``--seconds``, as the hook's ``SessionEnd``
  does (the task's root span, ended, OTLP/JSON): one session in ten
  fails (``error``), the others complete.

What Slack shows of each task is read from the fake's calls as they
happen: the channel's board (its rows: the agent, the state, the question),
the task's parent (its header: ``✋ fl-d-007 · awaiting approval``, its
approval block) and its thread (``✋ Approval needed``, ``❌ Failed``).
Measured, against what each task really was and when:

* **approval request visible**: its question on any message (board,
  parent, thread), and **actionable**: on its parent, with its buttons;
* **error visible**: the task shown failed anywhere;
* **state current**: after each change of a task's state (started,
  waiting for a person, working again, ended) until a message shows that
  state or a newer one (its parent's header, its board row, or its thread's
  line that says it: a person's answer, the summary, a failure); on its own
  parent too;
* **the audit trail**: every task in PostgreSQL with its real final
  state, every request and every decision recorded.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _fleet import Fleet, FleetSession
from spanvisor.control.client import HttpSource
from spanvisor.gate import otlp
from spanvisor.gate.taskids import session_task_id, task_ids
from spanvisor.hook.task import SessionTask, otlp_args
from spanvisor.spans import conventions as cv

FAIL_EVERY = 10  # one session in ten ends with an error
ANSWER_S = (3.0, 8.0)  # how long the person takes
AGENT = re.compile(r"fl-([a-e])-(\d{3})")
ASKED = re.compile(r"fl([a-e])(\d{3})a\b")
JSON = "application/json"
WORKING, AWAITING = "working", "awaiting"


def state_of(said: str) -> str:
    """A parent header's status words (``awaiting approval``, ``working · ⏸
    stalled``) as one of working, awaiting, complete, error, ended."""
    s = said.lower()
    if "awaiting approval" in s:
        return AWAITING
    if s.startswith("error"):
        return "error"
    if s.startswith("complete"):
        return "complete"
    if s.startswith(("cancelled", "lost", "evicted")):
        return "ended"
    return WORKING


# A thread line that says the task's state: a person's answer (the task
# works again: every request here has one approver) and the summary
# (spanvisor.display.task.summary_text), after its emoji if any.
THREAD_STATE = re.compile(r"^\W*(Approved by|Complete in|Error in|Cancelled in|Lost|Evicted)\b")


def thread_state(said: str) -> str:
    if said == "Approved by":
        return WORKING
    return state_of(said)


# A board row's state by the emoji it starts with (spanvisor_slack.board_rows.row_text).
ROW_STATES = {"✋": AWAITING, "❌": "error", "✅": "complete", "🚫": "ended", "👻": "ended", "⏏️": "ended"}


def row_state(line: str) -> str:
    return next((state for mark, state in ROW_STATES.items() if line.startswith(mark)), WORKING)


@dataclass
class Truth:
    """What one session's task really was, and when (time.monotonic())."""

    changes: list[tuple[float, str, str]] = field(default_factory=list)  # (when, state, which change)
    asked: float | None = None
    ended: float | None = None
    outcome: str = "complete"
    decided: str = ""


class Supervised:
    """The supervised side of every session of one setup (see the module doc)."""

    def __init__(self, setup: str, fleet: Fleet, serve_http: int, seconds: float, token: str | None) -> None:
        self.setup, self.fleet, self.seconds = setup, fleet, seconds
        self.url = f"http://127.0.0.1:{serve_http}"
        self.control = HttpSource(self.url, token, request_timeout_s=10.0)
        self.truth: dict[int, Truth] = {}
        self.lock = threading.Lock()

    def plan(self, s: FleetSession) -> None:
        run_s = s.rng.uniform(0.6, 1.0) * self.seconds
        s.supervision = {
            "run_s": run_s,
            "ask_after": s.rng.uniform(0.2, 0.7) * run_s,
            "asked": False,
            "outcome": "error" if s.k % FAIL_EVERY == 3 else "complete",
        }
        self.truth[s.k] = Truth(outcome=s.supervision["outcome"])

    def started(self, s: FleetSession) -> None:
        with self.lock:
            self.truth[s.k].changes.append((time.monotonic(), WORKING, "started"))
        s.supervision["started_ns"] = time.time_ns()

    def task_id(self, s: FleetSession) -> str:
        return session_task_id(s.service, s.session_id)

    def after_tool(self, s: FleetSession, began: float) -> None:
        """Ask once the session has run long enough; the session waits for the answer."""
        sv = s.supervision
        if sv["asked"] or time.monotonic() - began < sv["ask_after"]:
            return
        sv["asked"] = True
        trace_hex, root_hex = task_ids(s.service, s.session_id)
        aid = f"h-fl{self.setup}{s.k:03d}a"
        request = {
            cv.TASK_ID: self.task_id(s),
            cv.APPROVAL_ID: aid,
            cv.APPROVAL_QUESTION: f"Allow Bash: git push origin fl{self.setup}{s.k:03d}a?",
            cv.APPROVAL_TIMEOUT_S: 120,
            "gen_ai.tool.name": "Bash",
        }
        at = time.monotonic()
        with self.lock:
            t = self.truth[s.k]
            t.asked = at
            t.changes.append((at, AWAITING, "asked"))
        body = otlp.encode(s.service, trace_hex, root_hex, [(cv.EVENT_APPROVAL_REQUEST, request, time.time_ns())])
        self.fleet.send(body, JSON, "/v1/logs", 1)
        time.sleep(s.rng.uniform(*ANSWER_S))
        sent = self.control.decide(self.task_id(s), "approve", "bench-person", approval_id=aid, source="cli")
        with self.lock:
            t.decided = sent.outcome
            t.changes.append((time.monotonic(), WORKING, "answered"))

    def end(self, s: FleetSession) -> None:
        """The session's end, as the hook's SessionEnd sends it."""
        sv = s.supervision
        task = SessionTask(s.session_id, s.service, False, otlp_args(self.url, None, 3.0))
        failed = sv["outcome"] == "error"
        end = task.end_request(
            None, sv.get("started_ns", time.time_ns()), sv["outcome"], "exit 1" if failed else None, None
        )
        at = time.monotonic()
        with self.lock:
            t = self.truth[s.k]
            t.ended = at
            t.changes.append((at, sv["outcome"], "ended"))
        self.fleet.send(json.dumps(end, separators=(",", ":")).encode(), JSON, "/v1/traces", 1)


@dataclass
class Seen:
    """What Slack showed of one task: (when, state, where) and the request's sightings."""

    states: list[tuple[float, str, str]] = field(default_factory=list)
    asked_anywhere: float | None = None
    asked_parent: float | None = None
    failed: float | None = None


class SlackStates:
    """Reads each Slack call the fake answered ok for what it shows of each task."""

    def __init__(self, setup: str) -> None:
        self.setup = setup
        self.seen: dict[int, Seen] = defaultdict(Seen)
        self.parents: dict[str, int] = {}  # a parent's ts -> its session
        self.board_calls = 0
        self.first_board: float | None = None

    def _session(self, text: str) -> int | None:
        m = AGENT.search(text)
        return int(m.group(2)) if m and m.group(1) == self.setup else None

    def __call__(self, method: str, args: Mapping[str, Any], response: Mapping[str, Any], at: float) -> None:
        blocks = [b for b in (args.get("blocks") or []) if isinstance(b, Mapping)]
        ids = [str(b.get("block_id") or "") for b in blocks]
        if any(i.startswith("sv-board") for i in ids):
            self.board_calls += 1
            if self.first_board is None:
                self.first_board = at
            for b in blocks:
                if b.get("type") != "section":
                    continue
                for line in str((b.get("text") or {}).get("text") or "").splitlines():
                    k = self._session(line)
                    if k is None:
                        continue
                    self._saw(k, at, row_state(line), "board")
                    if ASKED.search(line):
                        self._asked(k, at, "board")
            return
        if args.get("thread_ts"):
            k = self.parents.get(str(args.get("thread_ts")))
            text = str(args.get("text") or "")
            if k is not None and "Failed" in text:
                self._saw(k, at, "error", "thread")
            elif k is not None and (m := THREAD_STATE.match(text)):
                self._saw(k, at, thread_state(m.group(1)), "thread")
            for m in ASKED.finditer(json.dumps(args.get("blocks") or [], ensure_ascii=False) + text):
                if m.group(1) == self.setup:
                    self._asked(int(m.group(2)), at, "thread")
            return
        header = next((b for b in blocks if str(b.get("block_id") or "").startswith("sv-header")), None)
        if header is None:
            return
        said = str((header.get("text") or {}).get("text") or "")
        k = self._session(said)
        if k is None:
            return
        ts = response.get("ts") if method == "chat.postMessage" else args.get("ts")
        if ts:
            self.parents[str(ts)] = k
        self._saw(k, at, state_of(said.partition(" · ")[2]), "parent")
        whole = json.dumps(blocks, ensure_ascii=False)
        if f"fl{self.setup}{k:03d}a" in whole:
            self._asked(k, at, "parent")

    def _saw(self, k: int, at: float, state: str, where: str) -> None:
        seen = self.seen[k]
        seen.states.append((at, state, where))
        if state == "error" and seen.failed is None:
            seen.failed = at

    def _asked(self, k: int, at: float, where: str) -> None:
        seen = self.seen[k]
        if seen.asked_anywhere is None:
            seen.asked_anywhere = at
        if where == "parent" and seen.asked_parent is None:
            seen.asked_parent = at

    def finals_shown(self, truth: Mapping[int, Truth]) -> bool:
        """Every task that ended is shown ended, as it ended, somewhere."""
        return all(
            t.ended is not None and any(at >= t.ended and state == t.outcome for at, state, _ in self.seen[k].states)
            for k, t in truth.items()
        )


def _first(seen: list[tuple[float, str, str]], since: float, states: set[str], where: str | None) -> float:
    for at, state, w in seen:
        if at >= since and state in states and (where is None or w == where):
            return at - since
    return math.inf


def measure(truth: Mapping[int, Truth], states: SlackStates) -> dict[str, Any]:
    """The figures of the module doc, each a list of seconds (inf: never shown)."""
    asked, actionable, failed, current, current_parent = [], [], [], [], []
    by_change: dict[str, list[float]] = defaultdict(list)
    for k, t in truth.items():
        seen = states.seen[k]
        shown = sorted(seen.states)
        if t.asked is not None:
            at = seen.asked_anywhere
            asked.append(at - t.asked if at is not None and at >= t.asked else math.inf)
            at = seen.asked_parent
            actionable.append(at - t.asked if at is not None and at >= t.asked else math.inf)
        if t.ended is not None and t.outcome == "error":
            failed.append(_first(shown, t.ended, {"error"}, None))
        for i, (since, _, which) in enumerate(t.changes):
            later = {s for _, s, _ in t.changes[i:]}
            current.append(_first(shown, since, later, None))
            by_change[which].append(current[-1])
            current_parent.append(_first(shown, since, later, "parent"))
    decided = [t.decided for t in truth.values() if t.asked is not None]
    return {
        "asked": asked,
        "actionable": actionable,
        "failed": failed,
        "current": current,
        "current_parent": current_parent,
        "decided": decided,
        "board_calls": states.board_calls,
        "first_board": states.first_board,
        "by_change": dict(by_change),
        "outcomes": {k: t.outcome for k, t in truth.items()},
    }


def audit_sql() -> dict[str, str]:
    """What PostgreSQL must hold of a setup's sessions (``$1``: the task id pattern)."""
    return {
        "finals": "SELECT task_id, status FROM agent_tasks WHERE task_id LIKE $1",
        "requests": "SELECT count(DISTINCT task_id) FROM agent_checkpoints "
        "WHERE task_id LIKE $1 AND status = 'awaiting_approval'",
        "decisions": "SELECT count(*) FROM human_interventions WHERE task_id LIKE $1 AND action = 'approve'",
    }


__all__ = ["SlackStates", "Supervised", "Truth", "audit_sql", "measure", "row_state", "state_of"]
