"""A local fake of OpenAI's Chat Completions API on loopback, answering each
agent from its own script: ``FakeOpenAI({"triage": [...], "expert": [...]})``
serves ``url("triage")`` (a base URL ending in ``/v1``) from the triage
script. A reply is ``(text, None, input_tokens)`` or ``(tool, arguments,
input_tokens)``; from the call numbered ``fail_at[agent]`` on, every call
is answered 400 ``model backend down`` (a status the clients do not retry;
a framework that retries the step itself fails again). Streams
(``stream: true``) are answered as server-sent events with the usage chunk.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[str, dict[str, Any] | None, int]
OUTPUT_TOKENS = 80


class FakeOpenAI:
    def __init__(self, scripts: dict[str, list[Reply]], fail_at: dict[str, int] | None = None) -> None:
        self.scripts = scripts
        self.fail_at = fail_at or {}
        self.calls = dict.fromkeys(scripts, 0)
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                agent = self.path.strip("/").split("/")[0]
                status, payload = fake.answer(agent, body)
                if status == 200 and body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in _chunks(payload):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, agent: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{agent}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, agent: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            n = self.calls[agent]
            self.calls[agent] = n + 1
        if n >= self.fail_at.get(agent, len(self.scripts[agent])):
            return 400, {"error": {"message": "model backend down", "type": "invalid_request_error", "code": None}}
        text, arguments, t_in = self.scripts[agent][n]
        message: dict[str, Any] = {"role": "assistant", "content": text if arguments is None else None}
        if arguments is not None:
            call = {"name": text, "arguments": json.dumps(arguments)}
            message["tool_calls"] = [{"id": f"call-{agent}-{n}", "type": "function", "function": call}]
        return 200, {
            "id": f"cc-{agent}-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "message": message, "finish_reason": "stop" if arguments is None else "tool_calls"}
            ],
            "usage": {"prompt_tokens": t_in, "completion_tokens": OUTPUT_TOKENS, "total_tokens": t_in + OUTPUT_TOKENS},
        }


def _chunks(done: dict[str, Any]) -> list[dict[str, Any]]:
    """The completion as a stream: the message, its finish reason, then the usage."""
    choice = done["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant"}
    if message.get("content") is not None:
        delta["content"] = message["content"]
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
    head = {k: done[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    return [
        head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        head | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
        head | {"choices": [], "usage": done["usage"]},
    ]
