"""Hypothesis strategies: random task trees with clean and junk attribute values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from spanvisor.spans import conventions as cv
from spanvisor.spans.data import SpanEventData

from ._trees import SpanSpec


class _Huge(str):
    """A megabyte string that prints short in failure reports."""

    def __repr__(self) -> str:
        return f"<{len(self):,} chars>"


MEGABYTE = _Huge("m" * 1_000_000)
LONE_SURROGATE = "step \ud800 two"
NOT_UTF8 = b"\xff\xfe\xfd bytes"

# Python ints set through the SDK are unbounded.
HUGE_INTS = (10**400, -(10**400))

# Values an agent (or a broken exporter) may put where we expect something
# else. Strings where numbers belong, non-finite and absurd numbers, a
# megabyte string, bytes that are not UTF-8, lone surrogates, NUL, lists,
# nested data, None.
junk_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "40",
            "40%",
            " 55 ",
            "abc",
            "",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "9" * 400,
            "<!channel>",
            "a\x00b",
            LONE_SURROGATE,
        ]
    ),
    st.just(MEGABYTE),
    st.just(NOT_UTF8),
    st.binary(max_size=8),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=4), st.none(), st.floats()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


clean_progress = st.integers(0, 100)
clean_tokens = st.integers(0, 250_000)
USAGE_KEYS = frozenset(
    {cv.GEN_AI_INPUT, cv.GEN_AI_OUTPUT, cv.GEN_AI_PROMPT_OLD, cv.GEN_AI_COMPLETION_OLD, cv.OI_PROMPT, cv.OI_COMPLETION}
)
MODELS = ["claude-sonnet-4-20250514", "gpt-4o-mini", "acme-llm-7", "anthropic/claude-3-5-haiku", None]


def maybe_junk(clean: st.SearchStrategy[Any], junk_ratio: int = 4) -> st.SearchStrategy[Any]:
    """Mostly clean values, sometimes junk."""
    return st.one_of(*([clean] * (junk_ratio - 1)), junk_values)


state_updates = st.dictionaries(
    st.sampled_from([cv.PROGRESS, cv.STEP, cv.STEPS, cv.MESSAGE, cv.STATUS, cv.CONTEXT_TOKENS, cv.CONTEXT_LIMIT]),
    st.one_of(
        maybe_junk(clean_progress),
        st.sampled_from(["working", "blocked", "waiting", "complete", "error", "WAITING", "bogus"]),
        st.sampled_from(["plan", "edit", "test"]),
    ),
    min_size=1,
    max_size=3,
)

_CLEAN_STATE: dict[str, st.SearchStrategy[Any]] = {
    cv.PROGRESS: clean_progress,
    cv.STEP: st.sampled_from(["plan", "edit", "test"]),
    cv.STEPS: st.just(["plan", "edit", "test"]),
    cv.MESSAGE: st.sampled_from(["reading", "writing", "done"]),
    cv.STATUS: st.sampled_from(["working", "blocked", "waiting"]),
    cv.CONTEXT_TOKENS: clean_tokens,
    cv.CONTEXT_LIMIT: st.sampled_from([128_000, 200_000]),
    cv.BRANCH: st.sampled_from(["main", "fix/login"]),  # the agent switched branch
    cv.PULL_REQUEST: st.sampled_from(["https://github.com/acme/api/pull/12", "https://github.com/acme/api/pull/13"]),
}


@st.composite
def clean_state_updates(draw: st.DrawFn) -> dict[str, Any]:
    """State attributes with valid values only: an update the agent makes on its
    open root. (A junk value there is ignored; the end-order paths, which see
    only the root's last value, then cannot know an earlier valid one.)"""
    keys = draw(st.lists(st.sampled_from(sorted(_CLEAN_STATE)), min_size=1, max_size=3, unique=True))
    return {k: draw(_CLEAN_STATE[k]) for k in keys}


checkpoint_attrs = st.dictionaries(
    st.sampled_from([cv.PROGRESS, cv.STEP, "message", cv.MESSAGE, cv.CONTEXT_TOKENS, cv.STATUS, "extra", "n"]),
    maybe_junk(clean_progress),
    max_size=4,
)


budgets = st.dictionaries(
    st.sampled_from([cv.BUDGET_TOKENS, cv.BUDGET_USD]),
    st.one_of(st.integers(1, 300_000), st.floats(0.01, 50.0), junk_values),
    min_size=1,
    max_size=2,
)
# A task's results: agent.result.<name> on its root (a number, string or boolean).
results = st.dictionaries(
    st.sampled_from([f"{cv.RESULT_PREFIX}{n}" for n in ("files", "passed", "summary", "score")]),
    st.one_of(st.integers(-5, 500), st.booleans(), st.sampled_from(["ok", "partial", ""]), junk_values),
    min_size=1,
    max_size=3,
)
# More results than the SDK keeps attributes (128): it drops the oldest, the
# task's name and agent first. Set on the root right after it starts.
MANY_RESULTS = {f"{cv.RESULT_PREFIX}r{i}": i for i in range(130)}


@st.composite
def root_attrs(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ours", "ours_id", "genai", "openinference", "traceloop"]))
    if kind == "ours":
        attrs: dict[str, Any] = {cv.TASK_NAME: draw(maybe_junk(st.just(f"task {index}")))}
        if draw(st.booleans()):
            attrs[cv.AGENT_ID] = draw(maybe_junk(st.just("rivet")))
    elif kind == "ours_id":
        attrs = {cv.TASK_ID: f"T-{index}", cv.TASK_NAME: f"task {index}", cv.AGENT_ID: "rivet"}
    elif kind == "genai":
        attrs = {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "researcher"}
    elif kind == "openinference":
        attrs = {cv.OI_KIND: "AGENT", cv.AGENT_NAME: "oi-agent"}
    else:
        attrs = {cv.TL_KIND: "agent", cv.TL_ENTITY: "tl-agent"}
    if draw(st.integers(0, 3)) == 0:
        attrs[cv.BRANCH] = draw(maybe_junk(st.just("main")))
    if draw(st.integers(0, 5)) == 0:
        attrs[cv.PULL_REQUEST] = draw(maybe_junk(st.just("https://github.com/acme/api/pull/7")))
    if draw(st.booleans()):
        attrs.update(draw(state_updates))
    if draw(st.integers(0, 3)) == 0:
        attrs.update(draw(budgets))
    if draw(st.integers(0, 3)) == 0:
        attrs.update(draw(results))
    return attrs


# Unified diffs an agent may send (agent.diff.text): one names a secret.
DIFFS = (
    "diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n-K=1\n+OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789\n",
    "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n",
    "diff --git a/b.txt b/b.txt\nnew file mode 100644\n--- /dev/null\n+++ b/b.txt\n@@ -0,0 +1 @@\n+hello\n",
)


@st.composite
def span_events(draw: st.DrawFn, start: int, end: int, prefix: str) -> list[SpanEventData]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        t = draw(st.integers(start, end))
        kind = draw(st.sampled_from(["checkpoint", "checkpoint", "artifact", "exception", "approval", "diff", "diff"]))
        if kind == "diff":
            # A small pool, so a diff said again (by another span, in either
            # order) meets its earlier self; one holds a secret.
            attrs = {cv.DIFF_TEXT: draw(maybe_junk(st.sampled_from(DIFFS)))}
            if draw(st.booleans()):
                attrs[cv.DIFF_FILES] = draw(maybe_junk(st.integers(0, 3)))
            out.append(SpanEventData(cv.EVENT_DIFF, t, attrs))
        elif kind == "approval":
            # A small pool of ids, so requests and the agent's notes of their
            # answers meet (in either order) across spans of one task.
            aid = draw(st.sampled_from(["a1", "a2"]))
            if draw(st.booleans()):
                attrs = {cv.APPROVAL_ID: aid, cv.APPROVAL_QUESTION: draw(maybe_junk(st.just("Deploy?")))}
                out.append(SpanEventData(cv.EVENT_APPROVAL_REQUEST, t, attrs))
            else:
                attrs = {cv.APPROVAL_ID: aid, cv.APPROVAL_OUTCOME: draw(st.sampled_from(["approve", "reject"]))}
                out.append(SpanEventData(cv.EVENT_APPROVAL_DECISION, t, attrs))
        elif kind == "checkpoint":
            out.append(SpanEventData(cv.EVENT_CHECKPOINT, t, draw(checkpoint_attrs)))
        elif kind == "artifact":
            # Distinct names: an identical artifact twice is deduplicated by
            # whichever path reads it first (see test_orders_agree).
            name = f"{prefix}-art-{len(out)}"
            out.append(
                SpanEventData(
                    cv.EVENT_ARTIFACT,
                    t,
                    {cv.ARTIFACT_NAME: name, cv.ARTIFACT_URI: draw(maybe_junk(st.just(f"s3://b/{name}")))},
                )
            )
        else:
            out.append(
                SpanEventData(
                    cv.EVENT_EXCEPTION,
                    t,
                    {
                        "exception.type": draw(maybe_junk(st.just("ValueError"))),
                        "exception.message": draw(maybe_junk(st.just("bad"))),
                    },
                )
            )
    out.sort(key=lambda e: e.time_ns)
    return out


@st.composite
def child_attrs(draw: st.DrawFn, index: int, allow_nested_root: bool) -> dict[str, Any]:
    kinds = ["plain", "plain", "model", "model", "state", "tool", "embeddings"]
    if allow_nested_root:
        kinds += ["nested", "subagent"]
    kind = draw(st.sampled_from(kinds))
    if kind == "embeddings":
        return {
            cv.GEN_AI_OPERATION: "embeddings",
            cv.GEN_AI_REQUEST_MODEL: "text-embedding-3-small",
            cv.GEN_AI_INPUT: draw(maybe_junk(clean_tokens)),
        }
    if kind == "subagent":
        # A sub-agent: its model calls (children drawn under it) are a
        # conversation of their own.
        return {cv.GEN_AI_OPERATION: "invoke_agent", cv.GEN_AI_AGENT_NAME: "helper"}
    if kind == "plain":
        return {"http.request.method": "GET", "url.full": f"https://example.com/{index}"}
    if kind == "model":
        conv = draw(st.sampled_from(["genai", "genai_old", "openinference"]))
        model = draw(st.sampled_from(MODELS))
        if conv == "genai":
            a: dict[str, Any] = {
                cv.GEN_AI_OPERATION: "chat",
                cv.GEN_AI_INPUT: draw(maybe_junk(clean_tokens)),
                cv.GEN_AI_OUTPUT: draw(maybe_junk(st.integers(0, 8_000))),
            }
            if model:
                a[cv.GEN_AI_REQUEST_MODEL] = model
            if draw(st.integers(0, 3)) == 0:
                a[cv.GEN_AI_CONVERSATION] = draw(st.sampled_from(["conv-a", "conv-b"]))
        elif conv == "genai_old":
            a = {
                cv.GEN_AI_SYSTEM: "openai",
                cv.GEN_AI_PROMPT_OLD: draw(maybe_junk(clean_tokens)),
                cv.GEN_AI_COMPLETION_OLD: draw(maybe_junk(st.integers(0, 8_000))),
            }
            if model:
                a[cv.GEN_AI_RESPONSE_MODEL] = model
        else:
            a = {
                cv.OI_KIND: "LLM",
                cv.OI_PROMPT: draw(maybe_junk(clean_tokens)),
                cv.OI_COMPLETION: draw(maybe_junk(st.integers(0, 8_000))),
            }
            if model:
                a[cv.OI_MODEL] = model
        return a
    if kind == "state":
        return dict(draw(state_updates))
    if kind == "tool":
        return {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "grep"}
    return {cv.TASK_NAME: f"nested {index}"}


@st.composite
def traces(
    draw: st.DrawFn,
    max_traces: int = 3,
    max_children: int = 8,
    nested: bool = True,
    ends_out_of_order: bool = False,
    root_parent: bool = False,
    late_roots: bool = False,
    clean_root_updates: bool = False,
    many_attributes: bool = False,
    skew: bool = False,
    parallel: bool = False,
    task_ids: Callable[[int], str] | None = None,
) -> list[SpanSpec]:
    """Task trees. ``nested``: children start after and end before their
    parent. ``ends_out_of_order``: a child may end after its parent (async
    work left running). ``root_parent``: the task root may have a plain
    parent span (an HTTP server span) that ends after it. ``late_roots``: a
    root may become one only through attributes set after it started (then
    with no nested root under it: nothing can know at a child's start that
    its parent will become a task later). ``clean_root_updates``: attributes
    set on the open root carry valid values only. ``many_attributes``: a root
    of ours (named, with no task id) may be given more results than the SDK's
    attribute limit right after it starts. ``skew``: a child subtree may run
    on a service whose clock is off (``SpanSpec.clock_ns``). ``parallel``: a
    model call may have a twin in its conversation that starts after it and
    ends before it (parallel streaming calls ending out of order).
    ``task_ids``: the ``agent.task.id`` of the roots that carry one, by trace
    index (a hook for reused task ids). ``ends_out_of_order`` is the hook for
    late children."""
    specs: list[SpanSpec] = []
    for ti in range(draw(st.integers(1, max_traces))):
        trace_id = f"{ti + 1:032x}"
        # Far enough from zero that a clock 3 s behind still reads a valid time.
        base = 5_000_000_000 * (ti + 1)
        duration = draw(st.integers(10_000, 1_000_000))
        trace: list[SpanSpec] = []
        root_parent_id = None
        if root_parent and draw(st.booleans()):
            outer = SpanSpec(trace_id, f"{ti + 1:04x}ffffffffffff", None, "POST /run", base - 10, base + duration + 10)
            outer.start_attrs = {"http.request.method": "POST"}
            trace.append(outer)
            root_parent_id = outer.span_id
        root = SpanSpec(trace_id, f"{ti + 1:04x}{0:012x}", root_parent_id, f"agent run {ti}", base, base + duration)
        root.start_attrs = draw(root_attrs(ti))
        if task_ids is not None and cv.TASK_ID in root.start_attrs:
            root.start_attrs[cv.TASK_ID] = task_ids(ti)
        root.events = draw(span_events(base, base + duration, f"t{ti}-root"))
        for _ in range(draw(st.integers(0, 2))):
            updates = clean_state_updates() if clean_root_updates else state_updates
            root.updates.append((draw(st.integers(base, base + duration)), draw(updates)))
        root.updates.sort(key=lambda u: u[0])
        late = late_roots and draw(st.integers(0, 3)) == 0
        if late:
            root.updates.insert(0, (base + 1, root.start_attrs))
            root.updates.sort(key=lambda u: u[0])
            root.start_attrs = {}
        if many_attributes and draw(st.integers(0, 3)) == 0:
            # Named at its start, given more than the SDK keeps before its
            # first child: ours only, with no task id (an end-order path
            # without stamps cannot know a dropped id) and no late identity.
            root.start_attrs = {cv.TASK_NAME: f"task {ti}", cv.AGENT_ID: "rivet"}
            root.updates = [(base + 1, dict(MANY_RESULTS))]
            late = False
        root.error = draw(st.booleans())
        root.status_message = draw(st.one_of(st.none(), st.just("boom"), junk_values))
        trace.append(root)
        members = [root]
        for ci in range(draw(st.integers(0, max_children))):
            parent = draw(st.sampled_from(members))
            lo, hi = parent.start_ns + 1, parent.end_ns - 1
            if hi - lo < 4:
                continue
            start = draw(st.integers(lo, lo + (hi - lo) // 2))
            end = (
                draw(st.integers(start + 1, hi))
                if not ends_out_of_order
                else draw(st.integers(start + 1, hi + duration))
            )
            sid = f"{ti + 1:04x}{ci + 1:012x}"
            child = SpanSpec(trace_id, sid, parent.span_id, f"child {ci}", start, end)
            attrs = draw(child_attrs(ci, nested and not late))
            # Usage arrives when a model call ends, as instrumentations set it.
            usage = {k: attrs.pop(k) for k in list(attrs) if k in USAGE_KEYS}
            child.start_attrs = attrs
            if usage:
                child.updates.append((end, usage))
            if draw(st.integers(0, 3)) == 0:
                child.events = draw(span_events(start, end, f"t{ti}-c{ci}"))
            child.error = draw(st.integers(0, 5)) == 0
            child.status_message = "child failed" if child.error else None
            trace.append(child)
            members.append(child)
            if parallel and usage and end - start > 4 and draw(st.booleans()):
                trace.append(_twin(child, usage, draw(st.integers(start + 1, (start + end) // 2)), draw))
        if skew and len(members) > 1 and draw(st.booleans()):
            _skew(trace, draw(st.sampled_from(members[1:])), draw(st.sampled_from(CLOCK_OFFSETS)))
        specs.extend(trace)
    return specs


# How far a service's clock may be off: behind or ahead, by a little or by seconds.
CLOCK_OFFSETS = (-3_000_000_000, -500_000_000, 500_000_000, 3_000_000_000)


def _twin(call: SpanSpec, usage: dict[str, Any], start: int, draw: st.DrawFn) -> SpanSpec:
    """A model call of ``call``'s conversation (same parent, same attributes)
    that starts after it and ends before it, with a larger prompt."""
    end = draw(st.integers(start + 1, call.end_ns - 1))
    twin = SpanSpec(call.trace_id, call.span_id[:4] + "f" + call.span_id[5:], call.parent_id, call.name, start, end)
    twin.start_attrs = dict(call.start_attrs)
    more = {k: (v + 1_000 if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in usage.items()}
    twin.updates = [(end, more)]
    return twin


def _skew(trace: list[SpanSpec], top: SpanSpec, offset: int) -> None:
    """``top`` and its descendants run on a clock ``offset`` off the true time."""
    below = {top.span_id}
    for s in trace:  # parents come before their children in a trace
        if s is top or s.parent_id in below:
            below.add(s.span_id)
            s.clock_ns = offset
            s.start_ns += offset
            s.end_ns += offset
            s.updates = [(t + offset, u) for t, u in s.updates]
            s.events = [SpanEventData(e.name, e.time_ns + offset, e.attributes) for e in s.events]


@st.composite
def late_children(draw: st.DrawFn, specs: list[SpanSpec], max_late: int = 3) -> list[SpanSpec]:
    """``specs`` with work that outlives each task root added (the late-span
    rule): direct children of the root that start while it runs and end after
    it (model calls, an artifact, plain spans), and some that start after the
    root has ended (under a context captured before). Direct children only:
    an unstamped end-order path knows a late span's task from its parent."""
    roots = [s for s in specs if cv.is_root_candidate(s.start_attrs) and s.span_id.endswith("0" * 12)]
    out = list(specs)
    for root in roots:
        for i in range(draw(st.integers(0, max_late))):
            after = draw(st.integers(0, 3)) == 0  # starts after the root ended
            lo = root.end_ns + 1 if after else draw(st.integers(root.start_ns + 1, root.end_ns - 1))
            end = draw(st.integers(max(lo, root.end_ns) + 1, root.end_ns + 2_000_000))
            sid = f"{root.span_id[:4]}{0xF00 + i:012x}"
            child = SpanSpec(root.trace_id, sid, root.span_id, f"late {i}", lo, end)
            kind = draw(st.sampled_from(["model", "model", "artifact", "plain"]))
            if kind == "model":
                child.start_attrs = {
                    cv.GEN_AI_OPERATION: "chat",
                    cv.GEN_AI_REQUEST_MODEL: draw(st.sampled_from(MODELS[:3])),
                }
                child.updates = [
                    (end, {cv.GEN_AI_INPUT: draw(clean_tokens), cv.GEN_AI_OUTPUT: draw(st.integers(0, 8_000))})
                ]
            elif kind == "artifact":
                name = f"{sid}-art"
                child.events = [
                    SpanEventData(cv.EVENT_ARTIFACT, end, {cv.ARTIFACT_NAME: name, cv.ARTIFACT_URI: f"s3://b/{name}"})
                ]
            else:
                child.start_attrs = {"http.request.method": "GET"}
            out.append(child)
    return out


@st.composite
def agentless_traces(draw: st.DrawFn, max_traces: int = 3, max_children: int = 6) -> list[SpanSpec]:
    """Traces no agent names: a plain top span (a web request, a script's
    ``main``) over plain spans, model calls and tool calls, nested at random.
    Whether such a trace looks like an agent run is the provisional rule's to
    say (docs/reference/conventions.md#provisional-tasks)."""
    specs: list[SpanSpec] = []
    for ti in range(draw(st.integers(1, max_traces))):
        trace_id = f"{ti + 0xA1:032x}"
        base = 5_000_000_000 * (ti + 1)
        duration = draw(st.integers(10_000, 1_000_000))
        top = SpanSpec(
            trace_id, f"{ti + 0xA1:04x}{0:012x}", None, draw(st.sampled_from(["GET /x", "main"])), base, base + duration
        )
        top.start_attrs = {"http.request.method": "GET"} if top.name.startswith("GET") else {}
        top.resource = {"service.name": "web"}
        members = [top]
        for ci in range(draw(st.integers(0, max_children))):
            parent = draw(st.sampled_from(members))
            lo, hi = parent.start_ns + 1, parent.end_ns - 1
            if hi - lo < 4:
                continue
            start = draw(st.integers(lo, lo + (hi - lo) // 2))
            end = draw(st.integers(start + 1, hi))
            child = SpanSpec(trace_id, f"{ti + 0xA1:04x}{ci + 1:012x}", parent.span_id, f"child {ci}", start, end)
            child.resource = top.resource
            kind = draw(st.sampled_from(["plain", "plain", "model", "tool"]))
            if kind == "model":
                child.start_attrs = {cv.GEN_AI_OPERATION: "chat", cv.GEN_AI_REQUEST_MODEL: "gpt-4o"}
                child.updates = [(end, {cv.GEN_AI_INPUT: draw(st.integers(1, 5_000)), cv.GEN_AI_OUTPUT: 10})]
            elif kind == "tool":
                child.start_attrs = {cv.GEN_AI_OPERATION: "execute_tool", cv.GEN_AI_TOOL_NAME: "lookup"}
            else:
                child.start_attrs = {"http.request.method": "GET"}
            members.append(child)
        specs.extend(members)
    return specs
