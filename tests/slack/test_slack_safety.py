"""Agent-controlled text is never interpreted and never makes Slack reject a message."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_support import run, slack_env
from tests.fakes.slack_api import validate_blocks
from tests.taskscript import TaskScript

from spanvisor.display.thread import ThreadLine
from spanvisor.events import Artifact, TaskView
from spanvisor_slack import text as t
from spanvisor_slack.blocks import Look, parent_payload, problems, reply_payload

FAST = {
    "slack_update_interval_s": 0.0,
    "slack_reply_interval_s": 0.0,
    "slack_channel_interval_s": 0.0,
    "channel_rate": 100.0,
}
CORPUS = [
    "<!channel> deploy now",
    "<!here>",
    "<@U123> please approve",
    "<!subteam^S1|@oncall>",
    "<https://evil.example|click here>",
    "&lt;!channel&gt; already escaped",
    "bell\x07 nul\x00 esc\x1b[31m",
    "right-to-left \u202e gnp.exe",
    "```",
    "*bold* _it_ ~s~",
    "<#C123>",
    "<!everyone>",
    "<!date^1|x>",
]
LIVE = ["<!channel>", "<!here>", "<@U123>", "<!subteam^", "<https://evil", "<#C123>", "<!everyone>", "<!date"]


def _sent_text(calls: list) -> str:
    return json.dumps([c.args for c in calls], ensure_ascii=False)


def test_mentions_links_and_control_characters_are_shown_as_typed(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with slack_env(slack_prefix="[auto-ops] <!here>", **FAST) as env:
            for i, bad in enumerate(CORPUS):
                task = TaskScript.new(f"inj-{i}", agent=bad, task_name=bad, repo=bad, steps=(bad, "next"), model=bad)
                await env.send(task.started(), task.checkpoint(progress=50.0, step=bad, message=bad))
                await env.send(task.artifact(bad, bad), task.warning("critical", 90, 100, 0.85))
                await env.send(task.finished("error", error_type=bad, error_message=bad, stacktrace=bad))
            assert await env.sink.force_flush(20)
            calls = [c for c in env.fake.calls if c.method.startswith("chat.")]
            assert calls and all(c.response.get("ok") for c in calls)
            sent = _sent_text(calls)
            for live in LIVE:
                assert live not in sent
            assert "&amp;lt;!channel&amp;gt; already escaped" in sent  # shown as typed, not as <!channel>
            assert "&lt;!channel&gt; deploy now" in sent
            assert not any(ch in sent for ch in "\x00\x07\x1b\u202e")
            for c in calls:
                assert "link_names" not in c.args and c.args.get("parse") != "full"
                # Nothing we send contains an unescaped '<' at all.
                assert "<" not in json.dumps(c.args, ensure_ascii=False)

    run(main())


def test_oversize_content_is_truncated_visibly_and_accepted() -> None:
    huge = "x" * 1_000_000

    async def main() -> None:
        async with slack_env(**FAST) as env:
            task = TaskScript.new(
                "big",
                agent="a" * 5000,
                task_name=huge,
                repo=huge,
                steps=tuple(f"s{i}" for i in range(5000)),
                model=huge,
            )
            await env.send(task.started(), task.checkpoint(progress=10.0, step="s3", message=huge))
            for i in range(300):
                await env.send(task.artifact(f"artifact-{i}-" + "n" * 3000, "https://x.example/" + "u" * 5000))
            await env.send(task.finished("error", error_type=huge, error_message=huge, stacktrace=("line\n" * 200_000)))
            assert await env.sink.force_flush(20)
            bad = [c for c in env.fake.calls if not c.response.get("ok")]
            assert not bad, [(c.method, c.response) for c in bad][:3]
            parent = env.fake.parents()[0]
            assert "…" in parent.blocks[0]["text"]["text"] and "…" in parent.blocks[1]["text"]["text"]
            assert "and " in json.dumps(parent.attachments) and "more" in json.dumps(parent.attachments)
            replies = env.fake.thread(parent)
            # 300 artifacts arrive merged, ten per reply, in order.
            arts = [r for r in replies if r.text.startswith("Artifact")]
            assert (
                len(arts) == 30
                and "artifact-0-" in arts[0].text
                and "artifact-299-" in arts[-1].blocks[-1]["text"]["text"]
            )
            err = next(r for r in replies if r.text.startswith("Failed"))
            assert "```" in err.blocks[1]["text"]["text"] and "…" in err.text

    run(main())


def test_the_escaper_and_the_clipper() -> None:
    assert t.escape("a & <b> &amp;") == "a &amp; &lt;b&gt; &amp;amp;"
    assert t.clip("&amp;" * 10, 8) == "&amp;…"
    assert t.clip("abc", 3) == "abc" and t.clip("abcd", 3) == "ab…"
    assert t.clip_tail("0123456789", 5).endswith("6789")
    assert "```" not in t.code_block("a```b", 100)[3:-3]


text = st.text(alphabet=st.characters(codec="utf-8"), max_size=4000)


@settings(max_examples=40, deadline=None)
@given(
    name=text,
    message=text,
    agent=st.text(max_size=300),
    step=text,
    progress=st.none() | st.floats(0, 100),
    artifacts=st.lists(st.tuples(text, st.none() | text), max_size=30),
    prefix=st.none() | st.text(max_size=100),
)
def test_any_task_gives_a_payload_slack_accepts(
    name: str,
    message: str,
    agent: str,
    step: str,
    progress: float | None,
    artifacts: list[tuple[str, str | None]],
    prefix: str | None,
) -> None:
    view = TaskView(
        task_id="t",
        trace_id="0" * 32,
        root_span_id="0" * 16,
        agent_id=agent or "a",
        task_name=name,
        message=message,
        step=step,
        steps=(step, "x"),
        progress=progress,
        repo=name,
        artifacts=tuple(Artifact(a, u) for a, u in artifacts),
        context_tokens=5,
        context_limit=10,
    )
    look = Look(prefix, "https://g.example/d?t={task_id}", None)
    for payload in (
        parent_payload(view, look, 0),
        reply_payload([ThreadLine("e", "error", "x", name, message, step)], look),
    ):
        assert problems(payload) == []
        validate_blocks(payload["blocks"])
        for a in payload.get("attachments", []):
            validate_blocks(a["blocks"])
        assert len(payload["text"]) <= 4000
        assert "<" not in json.dumps(payload, ensure_ascii=False)


@pytest.mark.parametrize(
    ("token", "parents", "logged"),
    [
        # Each scenario logs on a path where a token could leak; the check
        # that it does not is only worth something if something was logged.
        ("xoxb-fatal-after-post-nohistory~SECRET", 1, "missing_scope"),
        ("xoxb-5xx-2~SECRET", 1, "http_5xx"),
        ("xoxb-not-in-channel~SECRET", 0, "not_in_channel"),
        ("xoxb-ratelimited-1s~SECRET", 1, "rate-limited"),
    ],
)
def test_the_token_never_reaches_logs(token: str, parents: int, logged: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with slack_env(token, **FAST) as env:
            task = TaskScript.new("tok")
            await env.send(task.started(), task.checkpoint(progress=30.0), task.finished("error", error_type="E"))
            assert await env.sink.force_flush(20)
            assert len(env.fake.parents()) == parents
            # Every call carried the token, marker included.
            assert env.fake.calls and all(c.token == token for c in env.fake.calls)

    # The spanvisor logger too: another test may have configured it (logs.setup) above DEBUG.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="spanvisor"):
        run(main())
    assert logged in caplog.text
    assert "SECRET" not in caplog.text
