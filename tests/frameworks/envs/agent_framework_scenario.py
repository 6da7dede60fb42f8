"""Microsoft Agent Framework with its native OTel GenAI spans, offline on a
scripted chat client built as its own clients are (the function-invocation
and telemetry layers over ``BaseChatClient``). It traces only to the global
provider, so the suite runs it through _drive.py in its own Python.

A triage Agent makes 3 model calls (2,000 → 8,800 input tokens on gpt-4o),
runs a tool and an expert Agent as a tool (``as_tool``, 1 call of its own);
the failing case fails on its second model call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import _live
from agent_framework import (
    Agent,
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    Message,
    ResponseStream,
)
from agent_framework._tools import FunctionInvocationLayer
from agent_framework.observability import ChatTelemetryLayer, enable_instrumentation

Reply = tuple[str, dict[str, str] | None, int]


class ScriptedClient(FunctionInvocationLayer[Any], ChatTelemetryLayer[Any], BaseChatClient[Any]):
    OTEL_PROVIDER_NAME = "openai"

    def __init__(self, script: list[Reply], fail_at: int = -1) -> None:
        super().__init__()
        self.script = script
        self.fail_at = fail_at
        self.calls = 0

    async def _respond(self) -> ChatResponse:
        n = self.calls
        self.calls += 1
        if n == self.fail_at:
            raise RuntimeError("model backend down")
        text, arguments, t_in = self.script[n]
        if arguments is None:
            content = Content.from_text(text)
        else:
            content = Content.from_function_call(f"call-{n}", text, arguments=arguments)
        usage = {"input_token_count": t_in, "output_token_count": 80, "total_token_count": t_in + 80}
        return ChatResponse(
            messages=[Message(role="assistant", contents=[content])], model="gpt-4o", usage_details=usage
        )

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Any:
        if not stream:
            return self._respond()

        async def updates() -> Any:  # an agent run as a tool streams
            done = await self._respond()
            usage = Content.from_usage(done.usage_details or {})
            yield ChatResponseUpdate(role="assistant", contents=[*done.messages[0].contents, usage], model="gpt-4o")

        return ResponseStream(updates(), finalizer=ChatResponse.from_updates)


def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


async def _run(fail: bool) -> str:
    expert = Agent(
        client=ScriptedClient([("a worn bearing", None, 600)]),
        name="expert",
        description="Explains faults.",
        default_options={"model": "gpt-4o"},
    )
    triage = Agent(
        client=ScriptedClient(
            [
                ("lookup", {"code": "F47"}, 2_000),
                ("expert", {"task": "why F47?"}, 5_000),
                ("Routed to the Siemens SME", None, 8_800),
            ],
            fail_at=1 if fail else -1,
        ),
        name="triage",
        instructions="Route the fault.",
        tools=[lookup, expert.as_tool()],
        default_options={"model": "gpt-4o"},
    )
    return (await triage.run("Diagnose fault F47")).text


def _case(fail: bool) -> Any:
    def run(provider: Any) -> str:
        enable_instrumentation()  # on by default; said, as a user would
        return asyncio.run(_run(fail))

    return run


CASES: dict[str, Any] = {"ok": _case(fail=False), "fail": _case(fail=True)}
