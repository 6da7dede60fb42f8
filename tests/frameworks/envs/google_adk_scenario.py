"""Google ADK with its native OTel GenAI spans, offline on a scripted model
(a ``BaseLlm`` answering from a script, as a model integration does).

A triage LlmAgent makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o), runs a tool and an expert agent as an ``AgentTool`` (1 call of its
own); the failing case fails on its second model call. Run by _drive.py in
the ``otel-1.44`` venv.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import _live
from google.adk.agents import LlmAgent
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.runners import InMemoryRunner
from google.adk.tools.agent_tool import AgentTool
from google.genai import types

Step = tuple[str, dict[str, str] | None, int]


class ScriptedLlm(BaseLlm):
    script: list[Step]
    fail_at: int = -1
    calls: int = 0

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        n = self.calls
        self.calls += 1
        if n == self.fail_at:
            raise RuntimeError("model backend down")
        name, args, t_in = self.script[n]
        part = types.Part.from_function_call(name=name, args=args) if args is not None else types.Part(text=name)
        yield LlmResponse(
            content=types.Content(role="model", parts=[part]),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=t_in, candidates_token_count=80, total_token_count=t_in + 80
            ),
        )


def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def triage(fail: bool) -> LlmAgent:
    expert = LlmAgent(
        name="expert",
        description="Explains faults.",
        model=ScriptedLlm(model="gpt-4o", script=[("a worn bearing", None, 600)]),
    )
    script: list[Step] = [
        ("lookup", {"code": "F47"}, 2_000),
        ("expert", {"request": "why F47?"}, 5_000),
        ("Routed to the Siemens SME", None, 8_800),
    ]
    return LlmAgent(
        name="triage",
        instruction="Route the fault.",
        model=ScriptedLlm(model="gpt-4o", script=script, fail_at=1 if fail else -1),
        tools=[lookup, AgentTool(agent=expert)],
    )


async def _run(fail: bool) -> str:
    runner = InMemoryRunner(agent=triage(fail), app_name="faults")
    session = await runner.session_service.create_session(app_name="faults", user_id="u1")
    text = ""
    message = types.Content(role="user", parts=[types.Part(text="Diagnose fault F47")])
    async for event in runner.run_async(user_id="u1", session_id=session.id, new_message=message):
        for part in (event.content.parts or []) if event.content else []:
            text = part.text or text
    return text


CASES: dict[str, Any] = {
    "ok": lambda provider: asyncio.run(_run(fail=False)),
    "fail": lambda provider: asyncio.run(_run(fail=True)),
}
