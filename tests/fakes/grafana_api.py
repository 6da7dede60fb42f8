"""A local fake of Grafana's annotations HTTP API (aiohttp, 127.0.0.1, port 0).

It follows Grafana's own handlers (``pkg/api/annotations.go``): POST answers
``{"id": N, "message": "Annotation added"}``, an empty ``text`` is a 400
"Failed to save annotation", PATCH changes only the fields it is given and
answers 404 "Annotation not found" for an unknown id, GET filters by time
overlap, tags (all, or any with ``matchAny``), type, dashboardUID and limit,
newest first. A missing or wrong ``Authorization: Bearer`` is a 401; a token
listed in ``readonly_tokens`` gets the 403 a Viewer service account gets.

Failures are scripted per test: ``fail_next("POST", 503)`` answers the next
POST with a 503 without touching the store, ``apply=True`` applies the request
first and then fails it (the ambiguous case: the annotation exists but the
client saw an error), ``delay_s`` holds the answer (client timeouts).
Every request is logged in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Scripted:
    status: int
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    apply: bool = False
    delay_s: float = 0.0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None
    status: int = 0


@dataclass
class FakeGrafana:
    token: str = "glsa_fake_token_0123456789"
    readonly_tokens: tuple[str, ...] = ()
    version: str = "12.1.0"
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _next_id: int = 1
    _script: dict[str, deque[Scripted]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> FakeGrafana:
        app = web.Application()
        app.router.add_get("/api/health", self._health)
        app.router.add_post("/api/annotations", self._post)
        app.router.add_get("/api/annotations", self._find)
        app.router.add_get("/api/annotations/{id}", self._get_one)
        app.router.add_patch("/api/annotations/{id}", self._patch)
        app.router.add_delete("/api/annotations/{id}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeGrafana:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- scripting and inspection ---------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        apply: bool = False,
        delay_s: float = 0.0,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``method`` (or "*") this way."""
        q = self._script.setdefault(method.upper(), deque())
        q.extend([Scripted(status, retry_after, body, apply, delay_s)] * times)

    def calls(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path != "/api/health"]

    def by_tag(self, tag: str) -> list[dict[str, Any]]:
        return [a for a in self.annotations.values() if tag in a["tags"]]

    # --- plumbing ------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        query: dict[str, list[str]] = {}
        for k, v in request.query.items():
            query.setdefault(k, []).append(v)
        rec = Recorded(request.method, request.path, query, body, request.headers.get("Authorization"))
        self.requests.append(rec)
        return rec

    def _auth(self, rec: Recorded, write: bool) -> web.Response | None:
        bearer = rec.authorization or ""
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() != "bearer" or token not in (self.token, *self.readonly_tokens):
            return _json(
                401,
                {"message": "Invalid API key", "messageId": "api-key.invalid", "statusCode": 401},
            )
        if write and token in self.readonly_tokens:
            return _json(
                403,
                {
                    "message": "You'll need additional permissions to perform this action. "
                    "Permissions needed: annotations:write",
                    "accessErrorId": "ACE0000000001",
                },
            )
        return None

    def _scripted(self, method: str) -> Scripted | None:
        for key in (method, "*"):
            q = self._script.get(key)
            if q:
                return q.popleft()
        return None

    async def _handle(self, request: web.Request, write: bool, apply: Any) -> web.StreamResponse:
        rec = await self._record(request)
        denied = self._auth(rec, write)
        if denied is not None:
            rec.status = denied.status
            return denied
        forced = self._scripted(request.method)
        if forced is None:
            resp = apply(rec)
        else:
            if forced.apply:
                apply(rec)
            if forced.delay_s:
                await asyncio.sleep(forced.delay_s)
            headers = {"Retry-After": forced.retry_after} if forced.retry_after else {}
            resp = _json(forced.status, forced.body or {"message": _reason(forced.status)}, headers)
        rec.status = resp.status
        return resp

    # --- handlers ------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return _json(200, {"database": "ok", "version": self.version, "commit": "fake"})

    async def _post(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, True, self._apply_post)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, True, self._apply_patch)

    async def _find(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, False, self._apply_find)

    async def _get_one(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, False, self._apply_get_one)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, True, self._apply_delete)

    def _apply_post(self, rec: Recorded) -> web.Response:
        body = rec.body
        if not isinstance(body, dict) or not _valid_fields(body):
            return _json(400, {"message": "bad request data"})
        if not body.get("text"):
            return _json(400, {"message": "Failed to save annotation"})
        now = int(time.time() * 1000)
        start = body.get("time") or now
        end = body.get("timeEnd") or start
        if end < start:
            return _json(400, {"message": "Failed to save annotation"})
        ann_id = self._next_id
        self._next_id += 1
        self.annotations[ann_id] = {
            "id": ann_id,
            "alertId": 0,
            "dashboardId": 0,
            "dashboardUID": body.get("dashboardUID") or None,
            "panelId": body.get("panelId") or 0,
            "userId": 1,
            "newState": "",
            "prevState": "",
            "created": now,
            "updated": now,
            "time": start,
            "timeEnd": end,
            "text": body["text"],
            "tags": list(body.get("tags") or []),
            "login": "sa-spanvisor",
            "data": body.get("data") or {},
        }
        return _json(200, {"message": "Annotation added", "id": ann_id})

    def _lookup(self, rec: Recorded) -> tuple[int | None, web.Response | None]:
        raw = rec.path.rsplit("/", 1)[-1]
        try:
            ann_id = int(raw)
        except ValueError:
            return None, _json(400, {"message": "annotationId is invalid"})
        if ann_id not in self.annotations:
            return None, _json(404, {"message": "Annotation not found"})
        return ann_id, None

    def _apply_patch(self, rec: Recorded) -> web.Response:
        ann_id, err = self._lookup(rec)
        if err is not None or ann_id is None:
            return err or _json(404, {"message": "Annotation not found"})
        body = rec.body
        if not isinstance(body, dict) or not _valid_fields(body):
            return _json(400, {"message": "bad request data"})
        item = self.annotations[ann_id]
        # Grafana's PatchAnnotation: only non-empty fields replace the stored ones.
        if body.get("tags") is not None:
            item["tags"] = list(body["tags"])
        if body.get("text"):
            item["text"] = body["text"]
        if body.get("time", 0) > 0:
            item["time"] = body["time"]
        if body.get("timeEnd", 0) > 0:
            item["timeEnd"] = body["timeEnd"]
        item["updated"] = int(time.time() * 1000)
        return _json(200, {"message": "Annotation patched"})

    def _apply_get_one(self, rec: Recorded) -> web.Response:
        ann_id, err = self._lookup(rec)
        if err is not None or ann_id is None:
            return err or _json(404, {"message": "Annotation not found"})
        return _json(200, self.annotations[ann_id])

    def _apply_delete(self, rec: Recorded) -> web.Response:
        ann_id, err = self._lookup(rec)
        if err is not None or ann_id is None:
            return err or _json(404, {"message": "Annotation not found"})
        del self.annotations[ann_id]
        return _json(200, {"message": "Annotation deleted"})

    def _apply_find(self, rec: Recorded) -> web.Response:
        q = rec.query

        def one(name: str) -> str | None:
            return q[name][0] if name in q else None

        try:
            frm = int(one("from") or 0)
            to = int(one("to") or 0)
            limit = int(one("limit") or 100)
        except ValueError:
            return _json(400, {"message": "bad request data"})
        tags = q.get("tags", [])
        match_any = (one("matchAny") or "").lower() == "true"
        dash = one("dashboardUID")
        if one("type") == "alert":
            return _json(200, [])
        found = []
        for item in self.annotations.values():
            if frm and to and not (item["time"] <= to and item["timeEnd"] >= frm):
                continue
            if dash and item["dashboardUID"] != dash:
                continue
            if tags:
                hits = [t in item["tags"] for t in tags]
                if not (any(hits) if match_any else all(hits)):
                    continue
            found.append(item)
        found.sort(key=lambda a: (a["time"], a["timeEnd"]), reverse=True)
        return _json(200, found[:limit])


def _valid_fields(body: dict[str, Any]) -> bool:
    """Go's binding: ints must be integers, tags a list of strings."""
    for key in ("time", "timeEnd", "panelId", "dashboardId"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            return False
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        return False
    text = body.get("text")
    return text is None or isinstance(text, str)


def _reason(status: int) -> str:
    return {
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }.get(status, "error")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)
