"""The fake Anthropic Messages API Claude Code talks to (``ANTHROPIC_BASE_URL``).

``POST /v1/messages`` (Claude Code adds ``?beta=true``) answers the
script's turn as a stream of server-sent events, as the real API streams:
``message_start`` (with the usage of the input), one content block
(``tool_use`` with its input as ``input_json_delta``, or ``text``),
``message_delta`` (stop reason, output tokens), ``message_stop``. An error
turn is the API's error body with its HTTP status. ``count_tokens`` is
answered too; anything else is a 404 (listed as unexpected).
"""

from __future__ import annotations

import json
from typing import Any

from tests.codingagents.fake_http import FakeModelAPI, Reply, Seen, as_json, held, sse
from tests.codingagents.script import Script, Turn


def _done(body: Any) -> int:
    """Model turns already in the conversation: its assistant messages."""
    messages = body.get("messages") if isinstance(body, dict) else None
    return sum(1 for m in messages or () if isinstance(m, dict) and m.get("role") == "assistant")


def tool_results(body: Any) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks the CLI sent back, in order."""
    out = []
    for m in body.get("messages") or () if isinstance(body, dict) else ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            out.extend(c for c in content if isinstance(c, dict) and c.get("type") == "tool_result")
    return out


def result_text(block: dict[str, Any]) -> str:
    """What a ``tool_result`` block says (a string, or text blocks); Claude
    Code may append a ``<system-reminder>`` after it."""
    content = block.get("content")
    if isinstance(content, list):
        content = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content or "").split("\n\n<system-reminder>", 1)[0]


def _stream(model: str, turn: Turn, n: int) -> Reply:
    u = turn.usage
    start = {
        "id": f"msg_fake{n:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": u.input_tokens,
            "output_tokens": 1,
            "cache_read_input_tokens": u.cache_read,
            "cache_creation_input_tokens": u.cache_write,
        },
    }
    if turn.kind == "tool":
        block = {"type": "tool_use", "id": f"toolu_fake{n:04d}", "name": turn.tool, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(turn.args)}
        stop = "tool_use"
    else:
        block, delta, stop = {"type": "text", "text": ""}, {"type": "text_delta", "text": turn.text}, "end_turn"
    return sse(
        [
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": u.output_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def answer(script: Script, seen: Seen) -> Reply | None:
    path = seen.path.split("?", 1)[0]
    body = seen.body if isinstance(seen.body, dict) else {}
    if seen.method == "POST" and path == "/v1/messages/count_tokens":
        return as_json(200, {"input_tokens": 1_000})
    if seen.method != "POST" or path != "/v1/messages":
        return None
    done = _done(body)
    turn = script.turn(done)
    if turn.kind == "error":
        return as_json(turn.status, {"type": "error", "error": {"type": turn.error_type, "message": turn.text}})
    return held(_stream(str(body.get("model") or "claude-sonnet-4-5"), turn, done), turn.hold_s)


def fake_anthropic() -> FakeModelAPI:
    return FakeModelAPI(answer)
