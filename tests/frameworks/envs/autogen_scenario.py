"""AutoGen AgentChat 0.7 with its native OTel spans plus OpenInference's
OpenAI instrumentation (AutoGen traces agents and tools, never model calls:
without it a run has no tokens), offline: its OpenAIChatCompletionClient
against the local fake of OpenAI's API (_fake_openai.py).

A triage AssistantAgent makes 3 model calls (2,000 → 8,800 input tokens on
gpt-4o), runs a tool and an expert AssistantAgent as an ``AgentTool`` (1
call of its own); the failing case fails on its second model call. Run by
_drive.py in the ``otel-1.44`` venv.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _live
from _fake_openai import FakeOpenAI, Reply
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.tools import AgentTool
from autogen_ext.models.openai import OpenAIChatCompletionClient
from openinference.instrumentation.openai import OpenAIInstrumentor

_INSTRUMENTED: list[OpenAIInstrumentor] = []


def lookup(code: str) -> str:
    """Look up a fault code."""
    _live.probe()  # mid-run: what spanvisor shows of the task so far
    return f"fault {code}: spindle vibration"


def _client(fake: FakeOpenAI, agent: str) -> OpenAIChatCompletionClient:
    return OpenAIChatCompletionClient(model="gpt-4o", api_key="offline", base_url=fake.url(agent), max_retries=0)


async def _run(fail: bool) -> str:
    script: dict[str, list[Reply]] = {
        "triage": [
            ("lookup", {"code": "F47"}, 2_000),
            ("expert", {"task": "why F47?"}, 5_000),
            ("Routed to the Siemens SME", None, 8_800),
        ],
        "expert": [("a worn bearing", None, 600)],
    }
    fake = FakeOpenAI(script, {"triage": 1} if fail else None)
    try:
        expert = AssistantAgent("expert", model_client=_client(fake, "expert"), description="Explains faults.")
        triage = AssistantAgent(
            "triage",
            model_client=_client(fake, "triage"),
            tools=[lookup, AgentTool(expert)],
            system_message="Route the fault.",
            max_tool_iterations=3,
        )
        result = await triage.run(task="Diagnose fault F47")
        return str(result.messages[-1].content)
    finally:
        fake.close()


def _case(fail: bool) -> Any:
    def run(provider: Any) -> str:
        if not _INSTRUMENTED:  # once, on the driver's one provider
            _INSTRUMENTED.append(OpenAIInstrumentor())
            _INSTRUMENTED[0].instrument(tracer_provider=provider)
        return asyncio.run(_run(fail))

    return run


CASES: dict[str, Any] = {"ok": _case(fail=False), "fail": _case(fail=True)}
