"""A channel per coding session (``SPANVISOR_SLACK_CODE_CHANNELS``, issue 67).

The Slack sink against the fake Slack, which makes code channels as Slack
documents ``agents.conversations.create`` (idempotent on the session id),
refuses a bad context bar and answers ``is_archived`` once a channel is
archived:

* two replicas sharing one state store make one code channel per session;
  the task's parent and thread are there, the team channel has one line
  linking to it, the context bar says the repository, the agent and the
  model within Slack's limits, and the channel is archived once at the end
  with its session closed (a replayed end archives nothing twice);
* a retry of the task (a new run) gets a channel of its own;
* a create Slack refuses leaves the task in its routed channel, said once;
  so does one that would wait too long for create's pace (a burst);
* other agents' tasks, and every task with the setting off, are as before;
* rules on the agent or repo give a channel only to the sessions they match;
* a channel made before the task's name is renamed once the name arrives;
* its work-log tab (one per channel) shows the session's steps, decisions
  and end, escaped, and is sent only when it changed; its diff tab shows the
  newest diff (an empty one removes it); the fake takes tabs within Slack's
  documented rules.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from slack_support import Env, run, slack_env, tool
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_apps import manifest_errors
from tests.fakes.slack_codechannels import CodeChannel, View
from tests.fakes.slack_store import Message
from tests.taskscript import BASE_NS, ScaledClock, TaskScript

from spanvisor.events import ApprovalRequest, Decision, DiffUpdated, TaskView
from spanvisor.gate.taskids import session_task
from spanvisor.statestores.memory import InMemoryStateStore
from spanvisor_slack.codechannels import ARCHIVE, CREATE, MAX_LABEL, context_bar, is_coding, session_id_of
from spanvisor_slack.codechannels import BUSY as CODE_BUSY
from spanvisor_slack.codetab import SET_VIEW, VIEW_KEY
from spanvisor_slack.manifest import manifest
from spanvisor_slack.settings import EVERY_SESSION, CodeChannelRule, p_code_channels

pytestmark = [pytest.mark.timeout_s(60)]

FAST: dict[str, Any] = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    # The methods' own tiers (one create every 3 s) are not what these tests are about.
    "slack_rate_limits": "agents.conversations.create=0, agents.conversations.archive=0, "
    "agents.conversations.setProperties=0, agents.sessions.setStatus=0, agents.conversations.setView=0",
}
ON = {"slack_code_channels": "on", **FAST}


def _coding(task_id: str, **kw: Any) -> TaskScript:
    return TaskScript.new(task_id, agent="claude-code", **kw)


def _links(fake: FakeSlack) -> list[Message]:
    """The team channel's lines that link to a code channel."""
    return [m for m in fake.parents("#agents") if "<#C0CODE" in (m.text or "")]


def _says(m: Message, text: str) -> bool:
    return text in (m.text or "") or text in json.dumps(m.blocks)


def _only(fake: FakeSlack, cid: str) -> Message:
    [parent] = fake.parents(cid)
    return parent


def test_two_replicas_make_one_code_channel_per_session_and_archive_it_once() -> None:
    async def main() -> None:
        fake = FakeSlack(channel_rate=200.0, channel_burst=200)
        await fake.start()
        store = InMemoryStateStore()
        try:
            kw = {"fake": fake, "store": store, "flush_s": 20, **ON}
            async with slack_env(**kw) as a, slack_env(**kw) as b:
                names = {f"K{i}": f"Fix the flaky test {i}" for i in range(3)}
                ends = []
                for task_id, name in names.items():
                    whole = _coding(task_id, task_name=name, repo="acme/api", model="claude-sonnet-4")
                    part = _coding(task_id, repo="acme/api", model="claude-sonnet-4")  # some children, no name
                    await asyncio.gather(a.send(whole.started()), b.send(part.started()))
                    await b.send(part.checkpoint(progress=10.0), tool(part, "Bash"))
                    await a.send(whole.checkpoint(progress=50.0), tool(whole, "Edit"))
                    end = whole.finished("complete")
                    ends.append(end)
                    await asyncio.gather(a.send(end), b.send(part.checkpoint(progress=60.0)))
                for _ in range(2):
                    assert await a.sink.force_flush(20) and await b.sink.force_flush(20)
                made = len(fake.calls_to(CREATE, ok=True))
                # A replayed end, on both replicas: nothing is made or archived again.
                await asyncio.gather(a.send(*ends), b.send(*ends))
                assert await a.sink.force_flush(20) and await b.sink.force_flush(20)
                await asyncio.sleep(0.2)
                assert len(fake.calls_to(CREATE, ok=True)) == made
            channels: list[CodeChannel] = list(fake.code.channels.values())
            assert len(channels) == len(names)  # one per session
            assert [m for m in fake.parents("#agents") if m not in _links(fake)] == []  # no parent in the team channel
            links = _links(fake)
            assert sorted(m.text.split("<#", 1)[1].rstrip(">") for m in links if m.text) == sorted(
                c.id for c in channels
            )  # one line each
            for code in channels:
                parent = _only(fake, code.id)
                said = (parent.metadata or {}).get("event_payload", {})
                # Named after the task (by its id when the replica that made it held no name).
                assert code.name in (names[said["task_id"]], said["task_id"])
                thread = fake.thread(parent)
                assert thread and any(_says(m, "Complete in") for m in thread)  # the thread is there too
                bar = {i["key"]: i["label"] for i in code.context_bar_items}
                assert bar == {"repo": "acme/api", "agent": "claude-code", "model": "claude-sonnet-4"}
                assert code.archived and code.statuses == ["closed"]
                assert list(code.views) == [VIEW_KEY]  # one work-log tab, whichever replica sent it
                summary = next(m for m in thread if _says(m, "Complete in"))
                assert code.summary_message_ts == summary.ts
            archives = fake.calls_to(ARCHIVE)
            assert len(archives) == len(names) and all(c.response["ok"] for c in archives)  # once each
            assert not [c for c in fake.calls if c.response.get("error") == "is_archived"]
        finally:
            await fake.stop()

    run(main(), timeout=60)


def test_the_context_bar_follows_the_view_within_slacks_limits() -> None:
    async def go() -> None:
        async with slack_env(**ON) as env:
            task = _coding("BAR", task_name="refactor", repo="<!channel>/" + "x" * 300)
            await env.send(task.started())
            assert await env.sink.force_flush(10)
            await env.send(task.checkpoint(model="gpt-5"))
            assert await env.sink.force_flush(10)
            [code] = env.fake.code.channels.values()
            bars = [p["code_channel"]["context_bar_items"] for p in code.properties]
            assert len(bars) == 2  # at creation, and once the model is known
            for bar in bars:
                assert 1 <= len(bar) <= 5
                assert all(len(i["key"]) <= 64 and len(i["label"]) <= MAX_LABEL for i in bar)
            repo = bars[-1][0]["label"]
            assert repo.startswith("&lt;!channel&gt;/") and repo.endswith("…")  # escaped, clipped
            assert [i["key"] for i in bars[-1]] == ["repo", "agent", "model"]
            await env.send(task.checkpoint(branch="fix/<login>"))  # the agent switched branch
            assert await env.sink.force_flush(10)
            last = code.properties[-1]["code_channel"]["context_bar_items"]
            assert [(i["key"], i["label"], i.get("icon")) for i in last][:2] == [
                ("repo", repo, "folder"),
                ("branch", "fix/&lt;login&gt;", "branch"),
            ]
            pr = "https://github.com/acme/api/pull/12"
            await env.send(task.checkpoint(pull_request=pr))  # the agent made a pull request
            assert await env.sink.force_flush(10)
            last = code.properties[-1]["code_channel"]["context_bar_items"]
            assert [i["key"] for i in last] == ["repo", "branch", "pull_request", "agent", "model"]  # Slack's five
            assert last[2] == {"key": "pull_request", "label": "PR #12 · github.com", "icon": "link", "url": pr}
            assert code.context_bar_items == last  # the fake took it: a url within Slack's limit

    run(go())


def test_a_channel_made_before_the_tasks_name_is_renamed_once_it_arrives() -> None:
    """A session shown before its name (the CLI's first records name no
    prompt) gets a channel named by its task id; when the name comes, the
    channel takes it (``agents.sessions.rename``, once), and a replayed
    event renames nothing again. A session named from the start is never
    renamed."""

    async def go() -> None:
        async with slack_env(**ON) as env:
            late = _coding("claude-code:s-late", repo="acme/api")
            await env.send(late.started())
            assert await env.sink.force_flush(10)
            [code] = env.fake.code.channels.values()
            assert code.name == "claude-code:s-late"
            named = late.checkpoint(task_name="Fix <the> login bug")
            await env.send(named)
            assert await env.sink.force_flush(10)
            await env.send(named, late.checkpoint(progress=40.0))  # a replay and a later step
            assert await env.sink.force_flush(10)
            assert code.renames == ["Fix <the> login bug"] and code.name == "Fix <the> login bug"
            await env.send(late.finished("complete"))
            assert await env.sink.force_flush(10)
            assert code.archived and code.renames == ["Fix <the> login bug"]
            early = _coding("claude-code:s-early", task_name="Named at once")
            await env.send(early.started(), early.checkpoint(progress=10.0), early.finished("complete"))
            assert await env.sink.force_flush(10)
            made = next(c for c in env.fake.code.channels.values() if c.id != code.id)
            assert made.name == "Named at once" and made.renames == []
            renames = [c for c in env.fake.calls if c.method == "agents.sessions.rename"]
            assert len(renames) == 1 and renames[0].response["ok"]

    run(go())


def test_a_retry_is_a_new_run_with_a_channel_of_its_own() -> None:
    async def go() -> None:
        async with slack_env(**ON) as env:
            first = _coding("RETRY", task_name="migrate", run_id="run-1")
            await env.send(first.started(), first.finished("error"))
            assert await env.sink.force_flush(10)
            second = _coding("RETRY", task_name="migrate", run_id="run-2")
            await env.send(second.started())
            assert await env.sink.force_flush(10)
            one, two = env.fake.code.channels.values()
            assert one.id != two.id and one.session_id != two.session_id
            assert one.archived and not two.archived
            assert len(_only(env.fake, two.id).text or "") > 0
            assert len(_links(env.fake)) == 2

    run(go())


def test_a_refused_create_leaves_the_task_in_its_routed_channel(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        async with slack_env("xoxb-nocode-1", **ON) as env:
            for n in (1, 2):
                task = _coding(f"NO{n}", task_name=f"task {n}")
                await env.send(task.started(), task.finished("complete"))
                assert await env.sink.force_flush(10)
            assert len(env.fake.parents("#agents")) == 2 and env.fake.code.channels == {}
            for parent in env.fake.parents("#agents"):
                assert any(_says(m, "Complete in") for m in env.fake.thread(parent))  # nothing lost
            assert len(env.fake.calls_to(CREATE)) == 1  # missing a scope: not asked again for the next task
            assert env.stats.value("slack_code_channels_total", outcome="fallback") == 2

    caplog.set_level(logging.WARNING, logger="spanvisor.slack")
    run(go())
    said = [r.getMessage() for r in caplog.records if "did not make a code channel" in r.getMessage()]
    assert len(said) == 1 and "missing_scope" in said[0] and "code_channels:manage" in said[0], said


def test_a_workspace_that_refuses_one_task_still_posts_it() -> None:
    async def go() -> None:
        fake = FakeSlack()
        await fake.start()
        fake.code.refuse = "restricted_action"
        try:
            async with slack_env(fake=fake, **ON) as env:
                task = _coding("R1", task_name="r")
                await env.send(task.started())
                assert await env.sink.force_flush(10)
                assert len(fake.parents("#agents")) == 1
                fake.code.refuse = None
                later = _coding("R2", task_name="r2")
                await env.send(later.started())
                assert await env.sink.force_flush(10)
                assert len(fake.code.channels) == 1  # a refusal that is not for good: the next task asks
        finally:
            await fake.stop()

    run(go())


def test_a_burst_of_sessions_past_creates_pace_stays_routed_and_seen(caplog: pytest.LogCaptureFixture) -> None:
    """Twelve sessions at once, channels made at create's own tier (one
    every 3 s; Slack's time runs 2x here): the first get code channels, a
    session whose channel would wait over CREATE_WAIT_S stays in the team
    channel at once (counted, said once) rather than unseen for half a
    minute; every session has one parent and its whole thread, and a
    session that begins once the pace allows gets its channel again."""

    async def go() -> None:
        clock = ScaledClock(2.0)
        fake = FakeSlack(now=clock.now, channel_rate=200.0, channel_burst=200)
        await fake.start()
        paced = {**ON, "slack_rate_limits": FAST["slack_rate_limits"].replace("agents.conversations.create=0, ", "")}
        try:
            async with slack_env(fake=fake, clock=clock, flush_s=30, **paced) as env:
                tasks = [_coding(f"BURST{n}", task_name=f"burst {n}") for n in range(12)]
                await env.send(*[t.started() for t in tasks])
                await env.send(*[t.finished("complete") for t in tasks])
                assert await env.sink.force_flush(30)
                made = len(fake.code.channels)
                busy = env.stats.value("slack_code_channels_total", outcome=CODE_BUSY)
                routed = [m for m in fake.parents("#agents") if m not in _links(fake)]
                assert made >= 1 and busy >= 1 and made + busy == len(tasks), (made, busy)
                assert len(routed) == busy and len(_links(fake)) == made
                parents = routed + [_only(fake, c.id) for c in fake.code.channels.values()]
                said = sorted((m.metadata or {}).get("event_payload", {}).get("task_id") for m in parents)
                assert said == sorted(t.view.task_id for t in tasks)  # one parent each, nothing lost
                assert all(any(_says(m, "Complete in") for m in fake.thread(p)) for p in parents)
                # Once the queue has drained, the pace allows a channel again.
                later = _coding("LATER", task_name="later")
                await env.send(later.started())
                assert await env.sink.force_flush(30)
                assert len(fake.code.channels) == made + 1
        finally:
            await fake.stop()

    caplog.set_level(logging.WARNING, logger="spanvisor.slack")
    run(go(), timeout=60)
    said = [r.getMessage() for r in caplog.records if "stays in its routed channel" in r.getMessage()]
    assert len(said) == 1 and "20 a minute" in said[0], said


@pytest.mark.parametrize("setting, agent", [("off", "claude-code"), ("on", "rivet")])
def test_with_the_setting_off_or_another_agent_nothing_changes(setting: str, agent: str) -> None:
    async def go() -> None:
        async with slack_env(slack_code_channels=setting, **FAST) as env:
            task = TaskScript.new("PLAIN", agent=agent, task_name="plain")
            await env.send(task.started(), task.finished("complete"))
            assert await env.sink.force_flush(10)
            assert len(env.fake.parents("#agents")) == 1
            assert not [c for c in env.fake.calls if c.method.startswith("agents.")]

    run(go())


def test_rules_give_a_code_channel_only_to_the_sessions_they_match() -> None:
    """``SPANVISOR_SLACK_CODE_CHANNELS=agent:codex*,repo:acme/*``: a Claude
    Code session in acme/api and a Codex session anywhere get one; a Claude
    Code session elsewhere, and a non-coding agent in acme, stay in the team
    channel."""

    async def go() -> None:
        async with slack_env(slack_code_channels="agent:codex*, repo:acme/*", **FAST) as env:
            tasks = {
                "IN-ACME": TaskScript.new("IN-ACME", agent="claude-code", task_name="in acme", repo="acme/api"),
                "CODEX": TaskScript.new("CODEX", agent="codex_exec", task_name="codex", repo="other/x"),
                "ELSEWHERE": TaskScript.new("ELSEWHERE", agent="claude-code", task_name="elsewhere", repo="other/x"),
                "NOT-CODING": TaskScript.new("NOT-CODING", agent="rivet", task_name="rivet", repo="acme/api"),
            }
            for t in tasks.values():
                await env.send(t.started(), t.finished("complete"))
            assert await env.sink.force_flush(10)
            made = {c.name for c in env.fake.code.channels.values()}
            assert made == {"in acme", "codex"}
            team = [m for m in env.fake.parents("#agents") if m not in _links(env.fake)]
            shown = {(m.metadata or {}).get("event_payload", {}).get("task_id") for m in team}
            assert shown == {"ELSEWHERE", "NOT-CODING"}

    run(go())


@pytest.mark.parametrize(
    "raw, rules",
    [
        ("on", EVERY_SESSION),
        ("off", ()),
        ("", ()),
        (True, EVERY_SESSION),
        ("agent:claude-*, repo:acme/*", (CodeChannelRule("agent", "claude-*"), CodeChannelRule("repo", "acme/*"))),
        (["Repo: a/b"], (CodeChannelRule("repo", "a/b"),)),
    ],
)
def test_the_setting_reads_on_off_and_rules(raw: Any, rules: tuple[CodeChannelRule, ...]) -> None:
    assert p_code_channels(raw) == rules


@pytest.mark.parametrize("raw", ["status:error", "agent:", "claude-code", "agent:x=#ch, on"])
def test_a_rule_the_setting_cannot_read_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        p_code_channels(raw)


def test_which_tasks_are_coding_sessions_and_their_session_ids() -> None:
    def view(**kw: Any) -> TaskView:
        base: dict[str, Any] = {"task_id": "t", "trace_id": "a" * 32, "root_span_id": "b" * 16, "agent_id": "rivet"}
        return TaskView(**{**base, **kw})

    assert is_coding(view(agent_id="claude-code")) and is_coding(view(agent_id="codex_exec"))
    assert not is_coding(view())
    task_id, trace, root = session_task("claude-code", "sess-1")
    assert is_coding(view(task_id=task_id, trace_id=trace, root_span_id=root))  # renamed agent, a CLI's session
    assert not is_coding(view(task_id=task_id))  # only looks like one
    run1 = view(run_id="r1")
    assert session_id_of(run1) == session_id_of(view(run_id="r1", task_id="renamed"))  # the run, not the id
    assert session_id_of(run1) != session_id_of(view(run_id="r2"))
    assert context_bar(view(agent_id="a", repo="", model=None)) == (("agent", "a", "terminal", ""),)


@pytest.mark.parametrize(
    ("said", "item"),
    [
        ("https://github.com/acme/api/pull/12", ("PR #12 · github.com", "https://github.com/acme/api/pull/12")),
        ("https://gitlab.example/g/api/-/merge_requests/7?tab=diffs", ("PR #7 · gitlab.example", None)),
        ("https://git.example/acme/api/pulls/3", ("PR #3 · git.example", None)),
        ("https://review.example/changes/abc", ("Pull request · review.example", None)),
        ("#42", ("PR #42", "")),
        # The host the link goes to, whatever the address makes it look like.
        ("https://github.com@evil.example/acme/api/pull/1", ("PR #1 · evil.example", None)),
        ("https://github.com.evil.example/acme/api/pull/1", ("PR #1 · github.com.evil.example", None)),
        ("https:///pull/1", ("https:///pull/1", "")),
        # What the agent wrote is never a link of another kind, nor one a person would misread.
        ("javascript:alert(1)//pull/1", ("javascript:alert(1)//pull/1", "")),
        ("slack://open?team=T1", ("slack://open?team=T1", "")),
        ("https://evil.example/pull/1 <https://github.com|GitHub>", (None, "")),
        ("https://github.com/acme/api/pull/1\n<!channel>", (None, "")),
        ("https://x.example/" + "p" * 2100, (None, "")),
    ],
)
def test_a_pull_request_is_a_link_only_when_it_is_a_plain_web_address(said: str, item: tuple[Any, Any]) -> None:
    """``agent.pull_request`` in the context bar: ``PR #N`` linking to its page."""
    base = {"task_id": "T", "trace_id": "a" * 32, "root_span_id": "b" * 16, "agent_id": "claude-code"}
    [pr] = [i for i in context_bar(TaskView(**base, pull_request=said)) if i[0] == "pull_request"]
    label, url = item  # a label of None: the text as written, escaped and clipped; a url of None: the address said
    assert pr[2] == "link" and pr[3] == (said if url is None else url)
    if label is not None:
        assert pr[1] == label
    assert "<" not in pr[1] and ">" not in pr[1] and 1 <= len(pr[1]) <= MAX_LABEL


def test_the_manifest_asks_for_code_channels_only_when_on() -> None:
    off, on = manifest(), manifest(code_channels=True, agent_sessions=True)
    assert "code_channels:manage" not in off["oauth_config"]["scopes"]["bot"]
    assert "code_channels" not in off["features"]
    assert "code_channels:manage" in on["oauth_config"]["scopes"]["bot"]
    assert on["features"]["code_channels"] == {"enabled": True}
    assert manifest_errors(on) == []


def test_the_fake_enforces_what_slack_documents_for_code_channels() -> None:
    async def main() -> None:
        fake = FakeSlack()
        await fake.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def call(method: str, token: str = "xoxb-test", **args: Any) -> dict[str, Any]:
                    auth = {"Authorization": f"Bearer {token}"}
                    async with session.post(fake.base_url + method, json=args, headers=auth) as resp:
                        body: dict[str, Any] = await resp.json()
                        return body

                assert (await call(CREATE, "xoxb-nocode-x", name="n"))["needed"] == "code_channels:manage"
                assert (await call(CREATE, session_id="s1"))["error"] == "invalid_arguments"  # no name, no origin
                cid = (await call(CREATE, name="Fix it", session_id="s1"))["channel_id"]
                assert (await call(CREATE, name="again", session_id="s1"))["channel_id"] == cid  # idempotent
                assert (await call("chat.postMessage", channel=cid, text="hi"))["ok"]
                props = "agents.conversations.setProperties"
                assert (await call(props, channel_id=cid))["error"] == "invalid_arguments"  # no field
                six = [{"key": f"k{i}", "label": "l"} for i in range(6)]
                bad: list[list[dict[str, Any]]] = [
                    six,
                    [{"key": "k" * 65, "label": "l"}],
                    [{"key": "k", "label": "l" * 129}],
                    [{"key": "k", "label": "a"}, {"key": "k", "label": "b"}],
                    [{"key": "k", "label": "l", "icon": "rocket"}],
                ]
                for items in bad:
                    said = await call(props, channel_id=cid, code_channel={"context_bar_items": items})
                    assert said["error"] == "invalid_arguments", items
                good = [{"key": "repo", "label": "acme/api", "icon": "folder"}]
                assert (await call(props, channel_id=cid, code_channel={"context_bar_items": good}))["ok"]
                assert fake.code.channels[cid].context_bar_items == good
                general = fake.workspace.by_name_or_id("#general")
                assert general is not None
                assert (await call(props, channel_id=general.id, title="x"))["error"] == "not_agent_channel"
                status = "agents.sessions.setStatus"
                assert (await call(status, channel_id=general.id, status="closed"))["error"] == "invalid_arguments"
                assert (await call(status, channel_id=cid, status="closed"))["ok"]
                assert (await call(ARCHIVE, channel_id=cid))["ok"]
                assert (await call(ARCHIVE, channel_id=cid))["error"] == "already_archived"
                assert (await call("chat.postMessage", channel=cid, text="late"))["error"] == "is_archived"
                assert fake.code.channels[cid].statuses == ["closed"]
        finally:
            await fake.stop()

    run(main())


def _tab(code: CodeChannel) -> tuple[View, str]:
    """The channel's work-log tab and its text (every block's, joined)."""
    tab = code.views[VIEW_KEY]
    texts = [str((b.get("text") or {}).get("text", "")) for b in tab.blocks or []]
    return tab, "\n".join(texts)


def test_the_work_log_tab_shows_the_sessions_steps_and_decisions_and_its_end() -> None:
    """One ``block_kit`` tab per code channel (an upsert by its view key):
    every step with the current one marked, the people's decisions, its end
    and results, span text escaped; a replay sends nothing again, and the
    final tab goes before the channel is archived."""

    async def go() -> None:
        async with slack_env(**ON) as env:
            task = _coding("TAB", task_name="Fix <!channel> login", repo="acme/api", model="claude-sonnet-4")
            steps = ("plan", "edit <@U0BAD>", "test")
            await env.send(task.started(), task.checkpoint(steps=steps, step="plan"))
            assert await env.sink.force_flush(10)
            [code] = env.fake.code.channels.values()
            tab, text = _tab(code)
            assert (tab.type, tab.name) == ("block_kit", "Work log")
            assert tab.blocks is not None and tab.blocks[0]["text"]["text"] == "Fix <!channel> login"  # plain text
            assert "▶ plan\n○ edit &lt;@U0BAD&gt;\n○ test" in text and "<@U0BAD>" not in text  # escaped
            decided = Decision("i-1", "TAB", "approve", "U42", BASE_NS, actor_name="Alice <b>", source="slack")
            moved = task.checkpoint(step="edit <@U0BAD>", decisions=(decided,))
            await env.send(moved)
            assert await env.sink.force_flush(10)
            tab, text = _tab(code)
            assert "✓ plan\n▶ edit &lt;@U0BAD&gt;\n○ test" in text and "Approved by Alice &lt;b&gt;" in text
            sent = code.view_calls
            await env.send(moved)  # a replay: the same view, no call
            assert await env.sink.force_flush(10)
            assert code.view_calls == sent
            await env.send(task.checkpoint(step="test"), task.finished("complete"))
            assert await env.sink.force_flush(10)
            tab, text = _tab(code)
            assert "✓ edit &lt;@U0BAD&gt;\n✓ test" in text and "*Status:* complete" in text
            assert list(code.views) == [VIEW_KEY] and code.archived
            methods = [c.method for c in env.fake.calls if c.method.startswith("agents.")]
            assert methods.index(ARCHIVE) > max(i for i, m in enumerate(methods) if m == SET_VIEW)

    run(go())


def test_the_fake_takes_tabs_as_slack_documents_them() -> None:
    async def main() -> None:
        fake = FakeSlack()
        await fake.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def call(method: str, **args: Any) -> dict[str, Any]:
                    auth = {"Authorization": "Bearer xoxb-test"}
                    async with session.post(fake.base_url + method, json=args, headers=auth) as resp:
                        body: dict[str, Any] = await resp.json()
                        return body

                cid = (await call(CREATE, name="Tabs", session_id="s-tabs"))["channel_id"]
                blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
                assert (await call(SET_VIEW, channel_id=cid, type="block_kit", blocks=blocks))[
                    "error"
                ] == "invalid_arguments"  # no view_key
                assert (await call(SET_VIEW, channel_id=cid, type="block_kit", view_key="k"))[
                    "error"
                ] == "invalid_blocks"
                long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
                assert (await call(SET_VIEW, channel_id=cid, type="block_kit", view_key="k", blocks=long))[
                    "error"
                ] == "invalid_blocks"
                first = await call(SET_VIEW, channel_id=cid, type="block_kit", view_key="k", blocks=blocks)
                again = await call(SET_VIEW, channel_id=cid, type="block_kit", view_key="k", blocks=json.dumps(blocks))
                assert first["view_id"] == again["view_id"] and again["content_version"] == 2  # an upsert
                huge = "+" * 1_000_001
                assert (await call(SET_VIEW, channel_id=cid, type="diff", content=huge))["error"] == "content_too_large"
                assert (await call(SET_VIEW, channel_id=cid, type="diff", content="--- a\n+++ b\n"))["ok"]
                for i in range(3):
                    assert (await call(SET_VIEW, channel_id=cid, type="html", view_key=f"h{i}", content="<p>"))["ok"]
                six = await call(SET_VIEW, channel_id=cid, type="html", view_key="h9", content="<p>")
                assert six["error"] == "too_many_views"  # five per channel
                listed = await call("agents.conversations.listViews", channel_id=cid)
                assert len(listed["views"]) == 5
                assert (await call(ARCHIVE, channel_id=cid))["ok"]
                late = await call(SET_VIEW, channel_id=cid, type="block_kit", view_key="k", blocks=blocks)
                assert late["error"] == "is_archived"
        finally:
            await fake.stop()

    run(main())


def _diff(task: TaskScript, text: str, clipped: bool = False) -> DiffUpdated:
    eid, t = task._next()
    digest = hashlib.sha256(text.encode()).hexdigest()
    return DiffUpdated(
        event_id=eid,
        time_ns=t,
        task=task.view,
        diff=text,
        files=text.count("diff --git"),
        clipped=clipped,
        digest=digest,
    )


def test_the_diff_tab_shows_the_newest_diff_and_goes_when_the_work_is_undone() -> None:
    """Slack keeps one diff tab a channel: each diff replaces it, an older one
    (a replay) never does, an empty diff removes the tab, and a clipped diff
    says so in its name; the last goes before the archive. A task without a
    code channel gets no tab."""

    async def go() -> None:
        async with slack_env(**ON) as env:
            task = _coding("DIFF", task_name="refactor")
            one = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
            two = one + one.replace("a.py", "b.py")
            first = _diff(task, one)
            await env.send(task.started(), first, _diff(task, two))
            assert await env.sink.force_flush(10)
            [code] = env.fake.code.channels.values()
            tab = code.views["diff"]
            assert (tab.type, tab.name, tab.content) == ("diff", "Diff", two)
            await env.send(first)  # a replay of the older one
            assert await env.sink.force_flush(10)
            assert code.views["diff"].content == two
            await env.send(_diff(task, ""))  # every change undone
            assert await env.sink.force_flush(10)
            assert "diff" not in code.views
            await env.send(_diff(task, one, clipped=True), task.finished("complete"))
            assert await env.sink.force_flush(10)
            assert (code.views["diff"].content, code.views["diff"].name) == (one, "Diff (clipped)")
            assert code.archived
            methods = [c.method for c in env.fake.calls if c.method.startswith("agents.")]
            assert methods.index(ARCHIVE) > max(i for i, m in enumerate(methods) if m == SET_VIEW)
            other = TaskScript.new("PLAIN", task_name="not a session")
            await env.send(other.started(), _diff(other, one), other.finished("complete"))
            assert await env.sink.force_flush(10)
            assert len(env.fake.code.channels) == 1  # no channel, no tab

    run(go())


def test_a_diff_waiting_for_its_turn_lets_a_reply_go_first_and_still_shows() -> None:
    """A diff whose setView waits for the method's budget (here one call in
    30 s: the work log tab took the turn) steps out of the wait when a reply
    of its task is due (a failed tool call): the reply goes first, the diff
    keeps its place and shows once its turn comes, sent once, and the
    worker does not spin in between (a deferred send counts as done)."""

    async def go() -> None:
        async with _one_view_per_30_s() as env:
            fake = env.fake
            task = _coding("DEFER", task_name="refactor")
            one = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x\n+y\n"
            await env.send(task.started(), _diff(task, one))
            # The tab took the one call; the diff now waits for the next.
            await _until(lambda: len(fake.calls_to(SET_VIEW)) == 1, 10)
            await asyncio.sleep(0.2)
            assert len(fake.calls_to(SET_VIEW)) == 1
            await env.send(tool(task, "Bash", error="exit status 1"))
            reply = await _until(lambda: _reply_at(fake, "exit status 1"), 10)
            diff_at = await _until(lambda: _diff_call_at(fake), 30)
            assert reply < diff_at, "the reply went first"
            [code] = fake.code.channels.values()
            assert code.views["diff"].content == one
            await asyncio.sleep(0.5)  # the worker settles: nothing more to send
            calls = [c.method for c in fake.calls]
            assert calls.count(SET_VIEW) == 2, calls  # the tab and the diff, once each

    run(go())


def test_an_approval_asked_while_a_tab_waits_for_its_turn_shows_on_the_parent_first() -> None:
    """A task whose work-log tab waits for setView's budget (one call in 30 s:
    its first tab took the turn) comes to wait for a person: the parent's
    edit with the question and its buttons goes at once, the tab keeps its
    place and is sent at its turn. (Before, the task waited out the tab's
    turn first: in a code channel per session, seconds for every approval.)"""

    async def go() -> None:
        async with _one_view_per_30_s() as env:
            fake = env.fake
            task = _coding("ASK", task_name="deploy")
            await env.send(task.started())
            await _until(lambda: len(fake.calls_to(SET_VIEW)) == 1, 10)
            await env.send(task.checkpoint(progress=40.0), tool(task, "Edit"))
            await asyncio.sleep(0.3)  # the tab's next send now waits for its turn
            request = ApprovalRequest(approval_id="a-ASK", question="Deploy to production?")
            await env.send(task.checkpoint("awaiting_approval", approvals=(request,)))
            shown = await _until(lambda: _edit_at(fake, "Deploy to production?"), 10)
            tabs = [c.at for c in fake.calls_to(SET_VIEW, ok=True)]
            assert len(tabs) == 1 or tabs[1] > shown, "the approval waited for the tab"
            await _until(lambda: len(fake.calls_to(SET_VIEW, ok=True)) == 2, 30)  # the tab at its turn

    run(go())


def test_any_change_of_state_while_a_tab_waits_for_its_turn_shows_on_the_parent_first() -> None:
    """Any change of the task's state steps a waiting tab out, not only a
    question, a failure or the end: the task coming to wait on something
    (no thread line to post first) edits the parent at once while the tab
    keeps its place. (Before, it waited out the tab's turn.)"""

    async def go() -> None:
        async with _one_view_per_30_s() as env:
            fake = env.fake
            task = _coding("WAIT", task_name="deploy")
            await env.send(task.started())
            await _until(lambda: len(fake.calls_to(SET_VIEW)) == 1, 10)
            await env.send(task.checkpoint(progress=40.0))
            await asyncio.sleep(0.3)  # the tab's next send now waits for its turn
            before = len(fake.calls_to("chat.update", ok=True))
            await env.send(task.checkpoint("waiting"))
            await _until(lambda: len(fake.calls_to("chat.update", ok=True)) > before, 10)
            shown = fake.calls_to("chat.update", ok=True)[-1].at
            tabs = [c.at for c in fake.calls_to(SET_VIEW, ok=True)]
            assert len(tabs) == 1 or tabs[1] > shown, "the change waited for the tab"
            await _until(lambda: len(fake.calls_to(SET_VIEW, ok=True)) == 2, 30)  # the tab at its turn

    run(go())


def test_in_a_code_channel_a_question_waiting_for_an_edit_is_in_the_thread_at_once() -> None:
    """When the workspace's edits are scarce (one a minute here, the first
    taken by a status change), a question in a code channel of its own is
    posted to the thread at once (its posts wait for no other task) and the
    parent shows it with its buttons at the edit's turn; nothing is lost."""

    async def go() -> None:
        clock = ScaledClock(5.0)
        fake = FakeSlack(now=clock.now)
        await fake.start()
        scarce = {**ON, "slack_rate_limits": FAST["slack_rate_limits"] + ", chat.update=1/1"}
        try:
            async with slack_env(fake=fake, clock=clock, **scarce) as env:
                task = _coding("QQ", task_name="deploy")
                await env.send(task.started(), tool(task, "Edit"))
                await _until(lambda: len(fake.calls_to(SET_VIEW)) == 1 and _reply_at(fake, "Edit"), 10)
                await env.send(task.checkpoint("waiting"))  # takes the minute's edit
                await _until(lambda: fake.calls_to("chat.update", ok=True), 10)
                request = ApprovalRequest(approval_id="a-QQ", question="Deploy to production?")
                await env.send(task.checkpoint("awaiting_approval", approvals=(request,)))
                asked = await _until(lambda: _reply_at(fake, "Deploy to production?"), 10)
                assert _edit_at(fake, "Deploy to production?") is None  # the edit waits for its turn
                shown = await _until(lambda: _edit_at(fake, "Deploy to production?"), 30)
                assert shown > asked
                [code] = fake.code.channels.values()
                [parent] = fake.parents(code.id)
                assert "a-QQ" in json.dumps(parent.blocks)  # the buttons, on the parent
        finally:
            await fake.stop()

    run(go())


@asynccontextmanager
async def _one_view_per_30_s() -> AsyncIterator[Env]:
    """A code-channel sink whose setView has one call in 30 s, on a clock 5x
    real time shared with the fake Slack: Slack's 30 s in 6 real seconds,
    a window wide enough for a loaded machine's stalls."""
    clock = ScaledClock(5.0)
    fake = FakeSlack(now=clock.now)
    await fake.start()
    paced = {**ON, "slack_rate_limits": FAST["slack_rate_limits"].replace("setView=0", "setView=2/1")}
    try:
        async with slack_env(fake=fake, clock=clock, **paced) as env:
            yield env
    finally:
        await fake.stop()


def _edit_at(fake: FakeSlack, text: str) -> float | None:
    """When a parent edit first said ``text`` (the fake's clock)."""
    return next((c.at for c in fake.calls_to("chat.update", ok=True) if text in json.dumps(c.args)), None)


async def _until(cond: Any, within: float) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while not (value := cond()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
    return value


def _reply_at(fake: FakeSlack, text: str) -> float | None:
    """When the thread's reply saying ``text`` was posted (the fake's clock)."""
    for c in fake.calls_to("chat.postMessage", ok=True):
        if c.args.get("thread_ts") and text in json.dumps(c.args):
            return c.at
    return None


def _diff_call_at(fake: FakeSlack) -> float | None:
    return next((c.at for c in fake.calls_to(SET_VIEW, ok=True) if c.args.get("type") == "diff"), None)
