"""The fake Grafana refuses what Grafana refuses, and the sink lives with it.

Raw HTTP against tests/fakes/grafana_api.py, one rule per case (the rules and
their sources are in tests/fakes/grafana_rules.py), then the sink's answer to
the ones a deployment can meet: a proxy's 413 and the tags limit.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from grafana_helpers import T0, run, start_sink, started
from tests.fakes.grafana_api import FakeGrafana
from tests.fakes.grafana_rules import PLAUSIBLE_MS

from spanvisor.sink import SinkResult
from spanvisor.stats import PipelineStats

MS = T0 // 1_000_000
OK_BODY: dict[str, Any] = {"text": "deploy", "time": MS, "tags": ["spanvisor"]}


async def _send(
    fake: FakeGrafana, method: str, path: str, body: Any = None, *, raw: bytes | None = None, auth: str | None = "ok"
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if auth == "ok":
        headers["Authorization"] = f"Bearer {fake.token}"
    elif auth is not None:
        headers["Authorization"] = auth
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, fake.url + path, json=None if raw is not None else body, data=raw, headers=headers
        ) as r,
    ):
        text = await r.text()
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, text


def _case(method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any, FakeGrafana]:
    async def main() -> tuple[int, Any, FakeGrafana]:
        async with FakeGrafana(dashboards={"spanvisor-task": 7}) as fake:
            if method == "PATCH":
                assert (await _send(fake, "POST", "/api/annotations", OK_BODY))[0] == 200
            status, answer = await _send(fake, method, path, body, **kw)
            return status, answer, fake

    return run(main())


@pytest.mark.parametrize(
    ("auth", "message"),
    [(None, "Unauthorized"), ("Bearer nope", "Invalid API key"), ("Basic Zm9vOmJhcg==", "Invalid API key")],
)
def test_auth_header_is_required(auth: str | None, message: str) -> None:
    status, answer, fake = _case("POST", "/api/annotations", OK_BODY, auth=auth)
    assert (status, answer["message"]) == (401, message)
    assert not fake.annotations


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        ({"time": MS}, None, "Failed to save annotation"),  # text is required
        ({"text": ""}, None, "Failed to save annotation"),
        (None, b"", "Failed to save annotation"),  # an empty body binds to zero values
        ({"text": 5}, None, "bad request data"),
        ({"text": "x", "time": float(MS)}, None, "bad request data"),  # int64 only
        ({"text": "x", "time": str(MS)}, None, "bad request data"),
        ({"text": "x", "time": True}, None, "bad request data"),
        ({"text": "x", "timeEnd": 2**63}, None, "bad request data"),
        ({"text": "x", "tags": "a,b"}, None, "bad request data"),
        ({"text": "x", "tags": ["a", 1]}, None, "bad request data"),
        ({"text": "x", "dashboardUID": 7}, None, "bad request data"),
        (["text"], None, "bad request data"),
        (None, b"{not json", "bad request data"),
        ({"text": "x", "time": MS // 1000}, None, "is not epoch milliseconds"),  # seconds
        ({"text": "x", "time": MS, "timeEnd": MS * 1_000_000}, None, "is not epoch milliseconds"),  # ns
        ({"text": "x", "tags": ["t" * 250, "u" * 250]}, None, "Tags length exceeds the maximum allowed."),
        ({"text": "x", "tags": ["é" * 200, "ü" * 60]}, None, "Tags length exceeds the maximum allowed."),  # bytes
    ],
)
def test_bad_create_bodies_are_400(body: Any, raw: bytes | None, message: str) -> None:
    status, answer, fake = _case("POST", "/api/annotations", body, raw=raw)
    assert status == 400, answer
    assert message in answer["message"]
    assert not fake.annotations
    assert fake.calls("POST")[-1].rejected


def test_create_fills_and_orders_times_like_grafana() -> None:
    async def main() -> None:
        async with FakeGrafana(dashboards={"spanvisor-task": 7}) as fake:
            post = "/api/annotations"
            assert (await _send(fake, "POST", post, {"text": "a", "time": MS + 5, "timeEnd": MS}))[0] == 200
            assert (await _send(fake, "POST", post, {"text": "b", "time": MS, "dashboardUID": "nope"}))[0] == 200
            status, answer = await _send(
                fake, "POST", post, {"text": "c", "time": MS, "dashboardUID": "spanvisor-task"}
            )
            assert (status, answer) == (200, {"message": "Annotation added", "id": 3})
            status, _ = await _send(fake, "POST", post, {"text": "d", "unknown": [1], "tags": None})
            assert status == 200  # unknown fields ignored, null tags are none
            a, b, c, d = (fake.annotations[i] for i in (1, 2, 3, 4))
            assert (a["time"], a["timeEnd"]) == (MS, MS + 5)  # swapped, as validateTimeRange does
            assert b["timeEnd"] == b["time"] == MS  # a point
            assert b["dashboardUID"] is None and b["dashboardId"] == 0  # unknown uid: an org annotation
            assert c["dashboardUID"] == "spanvisor-task" and c["dashboardId"] == 7
            assert PLAUSIBLE_MS[0] < d["time"] == d["timeEnd"] < PLAUSIBLE_MS[1]  # no time: now
            assert d["tags"] == []

    run(main())


def test_patch_rules() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            assert (await _send(fake, "POST", "/api/annotations", OK_BODY))[0] == 200
            assert await _send(fake, "PATCH", "/api/annotations/99", {"text": "x"}) == (
                404,
                {"message": "Annotation not found"},
            )
            assert (await _send(fake, "PATCH", "/api/annotations/abc", {"text": "x"}))[0] == 400
            assert (await _send(fake, "PATCH", "/api/annotations/1", {"timeEnd": 1.5}))[0] == 400
            assert (await _send(fake, "PATCH", "/api/annotations/1", {"timeEnd": 17}))[0] == 400
            assert (await _send(fake, "PATCH", "/api/annotations/1", {"text": "x"}, auth=None))[0] == 401
            # Only what is given changes; an empty text keeps the old one.
            status, answer = await _send(fake, "PATCH", "/api/annotations/1", {"text": "", "timeEnd": MS + 42_000})
            assert (status, answer) == (200, {"message": "Annotation patched"})
            ann = fake.annotations[1]
            assert (ann["text"], ann["tags"], ann["time"], ann["timeEnd"]) == ("deploy", ["spanvisor"], MS, MS + 42_000)
            # Tags present, even empty, replace the stored ones.
            assert (await _send(fake, "PATCH", "/api/annotations/1", {"tags": []}))[0] == 200
            assert fake.annotations[1]["tags"] == []
            too_long = {"tags": ["x" * 300, "y" * 300]}
            assert (await _send(fake, "PATCH", "/api/annotations/1", too_long))[0] == 400
            assert fake.annotations[1]["tags"] == []

    run(main())


def test_oversized_body_is_a_proxy_413() -> None:
    async def main() -> None:
        async with FakeGrafana(max_body_bytes=4096) as fake:
            status, answer = await _send(fake, "POST", "/api/annotations", {"text": "x" * 5000, "time": MS})
            assert status == 413 and "413 Request Entity Too Large" in answer
            assert not fake.annotations and fake.calls("POST")[0].status == 413

    run(main())


def test_sink_counts_a_proxy_413_as_a_drop_with_the_fix() -> None:
    async def main() -> None:
        async with FakeGrafana(max_body_bytes=512) as fake:
            stats = PipelineStats()
            sink = await start_sink(fake, stats=stats, grafana_max_text=5000)
            result = await sink.export([started(message="m" * 4000, task_name="n" * 400)])
            assert result is SinkResult.SUCCESS  # permanent: dropped and counted, not retried
            assert [r.status for r in fake.calls("POST")] == [413]
            assert stats.value("dropped_total", reason="grafana_http_413", sink="grafana") == 1
            await sink.shutdown(1)

    run(main())


def test_sink_bodies_pass_every_rule() -> None:
    """Every request the sink makes in a full life (create, patch, lookup) is accepted."""

    async def main() -> None:
        async with FakeGrafana() as fake:
            from grafana_helpers import finished

            sink = await start_sink(fake, grafana_tags=("env:prod", "team:plant"))
            fake.fail_next("POST", 503, apply=True)  # forces the tag lookup too
            assert await sink.export([started(), finished(outcome="error")]) is SinkResult.SUCCESS
            assert {r.method for r in fake.requests} == {"POST", "GET", "PATCH"}
            assert not [r for r in fake.requests if r.rejected], [r.rejected for r in fake.requests]
            await sink.shutdown(1)

    run(main())


def test_non_ascii_ids_still_make_an_annotation() -> None:
    async def main() -> None:
        async with FakeGrafana() as fake:
            stats = PipelineStats()
            sink = await start_sink(fake, stats=stats)
            task = "задача-" + "ж" * 80
            try:
                await sink.export([started(task, agent_id="агент-" + "я" * 120, repo="репо/" + "ы" * 120)])
            finally:
                await sink.shutdown(1)
            assert [r.status for r in fake.calls("POST")] == [200], [r.rejected for r in fake.requests]
            assert stats.total("dropped_total") == 0

    run(main())
