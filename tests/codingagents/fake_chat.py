"""The fake OpenAI Chat Completions API that GitHub Copilot CLI, Qwen Code,
OpenCode and Cline talk to (each pointed at an OpenAI-compatible base URL).

``POST /v1/chat/completions`` answers the script's turn: as server-sent
``chat.completion.chunk`` events when the request asks to stream (one
chunk with the assistant's delta, a ``tool_calls`` entry with its JSON
arguments or the text; one with the finish reason; one with the usage, as
``stream_options.include_usage`` asks; then ``data: [DONE]``), else as one
``chat.completion``. Usage as OpenAI counts it: cached input inside
``prompt_tokens`` (``prompt_tokens_details.cached_tokens``). An error turn
is OpenAI's error body with its HTTP status. ``GET /v1/models`` lists the
models. Anything else is a 404 (listed as unexpected).

The turn is picked by the assistant messages after the conversation's
first user message: Qwen Code opens its history with a canned assistant
reply before the prompt, which is no model turn. A CLI's side request (a
title for the session: OpenCode asks one of the same API) is answered a
short title with no usage, and kept in ``side`` (it is no turn of the run).
"""

from __future__ import annotations

import json
from typing import Any

from tests.codingagents.fake_http import FakeModelAPI, Reply, Seen, as_json, held, sse
from tests.codingagents.script import Script, Turn, Usage

MODELS = ("gpt-4.1", "qwen3-coder-plus", "claude-sonnet-4-5", "fake-model")
# The system prompt a CLI's title request opens with (OpenCode 1.18).
_TITLE_ASKED = ("You are a title generator",)


def _messages(body: Any) -> list[dict[str, Any]]:
    msgs = body.get("messages") if isinstance(body, dict) else None
    return [m for m in msgs or () if isinstance(m, dict)]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def is_side_request(body: Any) -> bool:
    """A request for the session's title, not a turn of the conversation."""
    return any(m.get("role") == "system" and _text(m.get("content")).startswith(_TITLE_ASKED) for m in _messages(body))


def _done(body: Any) -> int:
    """Model turns already in the conversation: assistant messages after
    the first user message."""
    msgs = _messages(body)
    first_user = next((i for i, m in enumerate(msgs) if m.get("role") == "user"), len(msgs))
    return sum(1 for m in msgs[first_user + 1 :] if m.get("role") == "assistant")


def tool_results(body: Any) -> list[str]:
    """What the CLI sent back of each tool call (the ``tool`` messages), in order."""
    return [_text(m.get("content")) for m in _messages(body) if m.get("role") == "tool"]


def _usage(turn: Turn) -> dict[str, Any]:
    u = turn.usage
    prompt = u.input_tokens + u.cache_read  # OpenAI counts cached input inside the prompt
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    }


def _answer(model: str, turn: Turn, n: int, stream: bool) -> Reply:
    usage = _usage(turn)
    base = {"id": f"chatcmpl-fake{n:04d}", "created": 1_700_000_000 + n, "model": model}
    if turn.kind == "tool":
        call = {
            "index": 0,
            "id": f"call_fake{n:04d}",
            "type": "function",
            "function": {"name": turn.tool, "arguments": json.dumps(turn.args)},
        }
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{k: v for k, v in call.items() if k != "index"}],
        }
        delta: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": turn.text}
        delta = {"role": "assistant", "content": turn.text}
        finish = "stop"
    if not stream:
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return as_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
    chunk = {**base, "object": "chat.completion.chunk"}
    events: list[tuple[str | None, dict[str, Any]]] = [
        (None, {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
        (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
        (None, {**chunk, "choices": [], "usage": usage}),
    ]
    said = sse(events)
    return Reply(200, said.content_type, said.body + b"data: [DONE]\n\n")


def answer(script: Script, seen: Seen) -> Reply | None:
    path = seen.path.split("?", 1)[0]
    if seen.method == "GET" and path == "/v1/models":
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in MODELS]
        return as_json(200, {"object": "list", "data": data})
    if seen.method != "POST" or path != "/v1/chat/completions":
        return None
    body = seen.body if isinstance(seen.body, dict) else {}
    model = str(body.get("model") or "gpt-4.1")
    stream = bool(body.get("stream"))
    if is_side_request(body):
        return _answer(model, Turn("text", Usage(0, 0), text="A scripted session"), 0, stream)
    done = _done(body)
    turn = script.turn(done)
    if turn.kind == "error":
        err = {"message": turn.text, "type": turn.error_type, "param": None, "code": turn.error_type}
        return as_json(turn.status, {"error": err})
    return held(_answer(model, turn, done, stream), turn.hold_s)


def fake_chat() -> FakeModelAPI:
    return FakeModelAPI(answer)


def turns(api: FakeModelAPI, run: str) -> list[Any]:
    """The run's conversation requests (its side requests left out), in order."""
    return [
        s.body
        for s in api.requests(run)
        if s.path.split("?", 1)[0] == "/v1/chat/completions" and not is_side_request(s.body)
    ]
