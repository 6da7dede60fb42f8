"""The fake Gemini API Gemini CLI talks to (``GOOGLE_GEMINI_BASE_URL``).

``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` answers the
script's turn as server-sent events of ``GenerateContentResponse``, as the
real API streams: one candidate (a ``functionCall`` part, or text) with its
finish reason, and ``usageMetadata`` (prompt, candidates, cached tokens).
``:generateContent`` answers the same as one JSON document and
``:countTokens`` a count; an error turn is Google's error body with its
HTTP status. Anything else is a 404 (listed as unexpected).
"""

from __future__ import annotations

from typing import Any

from tests.codingagents.fake_http import FakeModelAPI, Reply, Seen, as_json, held, sse
from tests.codingagents.script import Script, Turn

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


def _done(body: Any) -> int:
    """Model turns already in the conversation: its ``model`` contents."""
    contents = body.get("contents") if isinstance(body, dict) else None
    return sum(1 for c in contents or () if isinstance(c, dict) and c.get("role") == "model")


def function_responses(body: Any) -> list[dict[str, Any]]:
    """The ``functionResponse`` parts the CLI sent back, in order."""
    out = []
    for c in body.get("contents") or () if isinstance(body, dict) else ():
        for p in c.get("parts") or () if isinstance(c, dict) else ():
            if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict):
                out.append(p["functionResponse"])
    return out


def _response(model: str, turn: Turn) -> dict[str, Any]:
    u = turn.usage
    part: dict[str, Any] = (
        {"functionCall": {"name": turn.tool, "args": turn.args}} if turn.kind == "tool" else {"text": turn.text}
    )
    prompt = u.input_tokens + u.cache_read  # Google counts cached input inside the prompt
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": prompt,
            "candidatesTokenCount": u.output_tokens,
            "cachedContentTokenCount": u.cache_read,
            "totalTokenCount": prompt + u.output_tokens,
        },
        "modelVersion": model,
        "responseId": "fake-response",
    }


def answer(script: Script, seen: Seen) -> Reply | None:
    path = seen.path.split("?", 1)[0]
    if seen.method != "POST" or not path.startswith("/v1beta/models/") or ":" not in path:
        return None
    model, _, method = path.removeprefix("/v1beta/models/").partition(":")
    body = seen.body if isinstance(seen.body, dict) else {}
    if method == "countTokens":
        return as_json(200, {"totalTokens": 1_000})
    if method not in ("streamGenerateContent", "generateContent"):
        return None
    turn = script.turn(_done(body))
    if turn.kind == "error":
        status = _STATUS.get(turn.status, "UNKNOWN")
        return as_json(turn.status, {"error": {"code": turn.status, "message": turn.text, "status": status}})
    doc = _response(model, turn)
    return held(sse([(None, doc)]) if method == "streamGenerateContent" else as_json(200, doc), turn.hold_s)


def fake_gemini() -> FakeModelAPI:
    return FakeModelAPI(answer)
