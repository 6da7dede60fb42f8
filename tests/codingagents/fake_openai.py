"""The fake OpenAI Responses API Codex CLI talks to (a ``[model_providers]``
entry with ``wire_api = "responses"``).

``POST /v1/responses`` answers the script's turn as server-sent events, as
the real API streams: ``response.created``, one output item
(``function_call`` with its JSON arguments, or an assistant ``message``)
added and done, and ``response.completed`` with the usage (cached input
inside the input, reasoning inside the output, as OpenAI counts them). An
error turn is OpenAI's error body with its HTTP status. Codex also posts
its turn costs to ``/v1/analytics/codex/turn-costs`` (answered 200);
anything else is a 404 (listed as unexpected).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.codingagents.fake_http import FakeModelAPI, Reply, Seen, as_json, held, sse
from tests.codingagents.script import Script, Turn, Usage


@dataclass(frozen=True)
class Tokens(Usage):
    """A turn's usage with the reasoning tokens OpenAI counts inside the output."""

    reasoning: int = 0


def _items(body: Any) -> list[dict[str, Any]]:
    items = body.get("input") if isinstance(body, dict) else None
    return [i for i in items or () if isinstance(i, dict)]


def _done(body: Any) -> int:
    """Model turns already in the conversation: its function calls and
    assistant messages (Codex sends the whole conversation each time)."""
    return sum(
        1
        for i in _items(body)
        if i.get("type") == "function_call" or (i.get("type") == "message" and i.get("role") == "assistant")
    )


def function_outputs(body: Any) -> list[str]:
    """What the CLI sent back of each function call, in order."""
    out = []
    for i in _items(body):
        if i.get("type") == "function_call_output":
            said = i.get("output")
            out.append(said if isinstance(said, str) else json.dumps(said))
    return out


def _item(turn: Turn, n: int) -> dict[str, Any]:
    if turn.kind == "tool":
        return {
            "type": "function_call",
            "id": f"fc_fake{n:04d}",
            "call_id": f"call_fake{n:04d}",
            "name": turn.tool,
            "arguments": json.dumps(turn.args),
            "status": "completed",
        }
    return {
        "type": "message",
        "id": f"msg_fake{n:04d}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": turn.text, "annotations": []}],
    }


def _stream(model: str, turn: Turn, n: int) -> Reply:
    u = turn.usage
    item = _item(turn, n)
    response: dict[str, Any] = {
        "id": f"resp_fake{n:04d}",
        "object": "response",
        "created_at": 1_700_000_000 + n,
        "model": model,
        "status": "in_progress",
        "output": [],
    }
    # OpenAI counts cached input inside the input, reasoning inside the output.
    usage = {
        "input_tokens": u.input_tokens + u.cache_read,
        "input_tokens_details": {"cached_tokens": u.cache_read},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning if isinstance(u, Tokens) else 0},
        "total_tokens": u.input_tokens + u.cache_read + u.output_tokens,
    }
    completed = {**response, "status": "completed", "output": [item], "usage": usage}
    events: list[tuple[str | None, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": response}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
    ]
    if turn.kind == "text":
        events.append(
            (
                "response.output_text.delta",
                {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "delta": turn.text},
            )
        )
    events += [
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed", {"type": "response.completed", "response": completed}),
    ]
    return sse(events)


def answer(script: Script, seen: Seen) -> Reply | None:
    path = seen.path.split("?", 1)[0]
    body = seen.body if isinstance(seen.body, dict) else {}
    if seen.method == "POST" and path == "/v1/analytics/codex/turn-costs":
        return as_json(200, {})
    if seen.method != "POST" or path != "/v1/responses":
        return None
    done = _done(body)
    turn = script.turn(done)
    if turn.kind == "error":
        err = {"message": turn.text, "type": turn.error_type, "param": None, "code": turn.error_type}
        return as_json(turn.status, {"error": err})
    return held(_stream(str(body.get("model") or "gpt-5-codex"), turn, done), turn.hold_s)


def fake_openai() -> FakeModelAPI:
    return FakeModelAPI(answer)
