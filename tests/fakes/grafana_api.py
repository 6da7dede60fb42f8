"""A local fake of Grafana's annotations HTTP API (aiohttp, 127.0.0.1, port 0).

It follows Grafana's own handlers (``pkg/api/annotations.go``) and the HTTP
API docs, as strictly as the fake Slack follows Slack's; the body rules are
in :mod:`tests.fakes.grafana_rules`:

* **Auth.** Every ``/api/annotations`` call needs ``Authorization: Bearer
  <token>``: none is ``401 "Unauthorized"``, an unknown token ``401 "Invalid
  API key"``; a token in ``readonly_tokens`` gets the 403 a Viewer service
  account gets on writes.
* **Size.** A body over ``max_body_bytes`` (1 MiB, the default
  ``client_max_body_size`` of the nginx usually in front of Grafana) is a
  413 from that proxy, HTML, before Grafana sees it.
* **POST** binds the body as Go does (wrong types or not an object: ``400
  "bad request data"``), needs a non-empty ``text`` (``400 "Failed to save
  annotation"``), fills a zero ``time`` with now and a zero ``timeEnd`` with
  ``time``, swaps an end before the start, limits the tags' stored length
  (``tags_length``, 500) and answers ``{"id": N, "message": "Annotation
  added"}``. A ``dashboardUID`` not in ``dashboards`` leaves an
  organization annotation, as in Grafana. Times must be epoch milliseconds.
* **PATCH** ``/api/annotations/:id``: a non-numeric id is ``400
  "annotationId is invalid"``, an unknown one ``404 "Annotation not
  found"``; only non-zero fields change, then the same checks as POST.
* **GET** ``/api/annotations`` filters by time overlap, tags (all, or any
  with ``matchAny``), type, dashboardUID and limit (100), newest first.

Failures are scripted per test: ``fail_next("POST", 503)`` answers the next
POST with a 503 without touching the store, ``apply=True`` applies the request
first and then fails it (the ambiguous case: the annotation exists but the
client saw an error), ``delay_s`` holds the answer (client timeouts);
``clear_script()`` drops what is left. Every request is logged in
``requests`` (with its status, and ``rejected``: why the fake refused it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.grafana_rules import Rejected, bind, check_ms, check_tags, time_range

MAX_BODY_BYTES = 1 << 20
PROXY_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n"
    "<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


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
    raw: bytes = b""
    rejected: str = ""


@dataclass
class FakeGrafana:
    token: str = "glsa_fake_token_0123456789"
    readonly_tokens: tuple[str, ...] = ()
    version: str = "12.1.0"
    # Dashboards by uid -> id; an annotation names one only if it exists here.
    dashboards: dict[str, int] = field(default_factory=dict)
    max_body_bytes: int = MAX_BODY_BYTES
    tags_length: int = 500
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _next_id: int = 1
    _script: dict[str, deque[Scripted]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    url: str = ""

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> FakeGrafana:
        # aiohttp's own limit would refuse big bodies before they are recorded.
        app = web.Application(client_max_size=self.max_body_bytes * 4)
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

    def clear_script(self) -> None:
        """Forget the failures still scripted."""
        self._script.clear()

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
        rec = Recorded(request.method, request.path, query, body, request.headers.get("Authorization"), raw=raw)
        self.requests.append(rec)
        return rec

    def _auth(self, rec: Recorded, write: bool) -> web.Response | None:
        if not rec.authorization:
            return _json(401, {"message": "Unauthorized", "statusCode": 401})
        scheme, _, token = rec.authorization.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in (self.token, *self.readonly_tokens):
            return _json(
                401,
                {"message": "Invalid API key", "messageId": "api-key.invalid", "statusCode": 401},
            )
        if write and token.strip() in self.readonly_tokens:
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
        if len(rec.raw) > self.max_body_bytes:
            # The proxy in front answers; Grafana never sees the request.
            rec.status, rec.rejected = 413, f"body of {len(rec.raw)} bytes"
            return web.Response(status=413, text=PROXY_413, content_type="text/html")
        denied = self._auth(rec, write)
        if denied is not None:
            rec.status, rec.rejected = denied.status, "auth"
            return denied
        forced = self._scripted(request.method)
        if forced is None:
            resp = self._apply(rec, apply)
        else:
            if forced.apply:
                self._apply(rec, apply)
            if forced.delay_s:
                await asyncio.sleep(forced.delay_s)
            headers = {"Retry-After": forced.retry_after} if forced.retry_after else {}
            resp = _json(forced.status, forced.body or {"message": _reason(forced.status)}, headers)
        rec.status = resp.status
        return resp

    @staticmethod
    def _apply(rec: Recorded, apply: Any) -> web.Response:
        try:
            resp: web.Response = apply(rec)
        except Rejected as exc:
            rec.rejected = str(exc)
            return _json(exc.status, exc.body)
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
        cmd = bind(rec.raw)
        check_ms(cmd)
        if not cmd["text"]:
            raise Rejected(400, {"message": "Failed to save annotation"}, "text field should not be empty")
        now = int(time.time() * 1000)
        start, end = time_range(cmd["time"], cmd["timeEnd"], now)
        tags = cmd["tags"] or []
        check_tags(tags, self.tags_length)
        dash_uid = cmd["dashboardUID"]
        dash_id = self.dashboards.get(dash_uid, 0) if dash_uid else cmd["dashboardId"]
        ann_id = self._next_id
        self._next_id += 1
        self.annotations[ann_id] = {
            "id": ann_id,
            "alertId": 0,
            "dashboardId": dash_id,
            "dashboardUID": dash_uid if dash_uid in self.dashboards else None,
            "panelId": cmd["panelId"],
            "userId": 1,
            "newState": "",
            "prevState": "",
            "created": now,
            "updated": now,
            "time": start,
            "timeEnd": end,
            "text": cmd["text"],
            "tags": list(tags),
            "login": "sa-spanvisor",
            "data": cmd["data"] or {},
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
        # Grafana binds the body before it reads the id.
        cmd = bind(rec.raw)
        ann_id, err = self._lookup(rec)
        if err is not None or ann_id is None:
            return err or _json(404, {"message": "Annotation not found"})
        check_ms(cmd)
        item = self.annotations[ann_id]
        # Grafana's PatchAnnotation: only non-zero fields replace the stored ones.
        tags = cmd["tags"] if cmd["tags"] is not None else item["tags"]
        text = cmd["text"] or item["text"]
        start = cmd["time"] if cmd["time"] > 0 else item["time"]
        end = cmd["timeEnd"] if cmd["timeEnd"] > 0 else item["timeEnd"]
        start, end = time_range(start, end, item["created"])
        check_tags(tags, self.tags_length)
        item.update(tags=list(tags), text=text, time=start, timeEnd=end, updated=int(time.time() * 1000))
        if cmd["data"] is not None:
            item["data"] = cmd["data"]
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
