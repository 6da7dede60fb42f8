"""A real SSE client for the stream tests: aiohttp's, reading the raw bytes
(so a test can cut a connection anywhere, even inside a frame) and parsing
frames the way EventSource does (comments and partial frames are not
events)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Frame:
    id: str | None
    event: str
    data: str

    @property
    def doc(self) -> Any:
        return json.loads(self.data)

    @property
    def event_id(self) -> str:
        assert self.id is not None
        return self.id.split(":", 2)[2]


def parse(raw: bytes) -> tuple[list[Frame], bytes]:
    """Complete frames in ``raw`` and what is left of an unfinished one."""
    frames = []
    *blocks, rest = raw.split(b"\n\n")
    for block in blocks:
        fields: dict[str, str] = {}
        for line in block.decode().split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            frames.append(Frame(fields.get("id"), fields.get("event", "message"), fields["data"]))
    return frames, rest


async def read(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    until: Callable[[list[Frame]], bool] = lambda f: False,
    max_bytes: int | None = None,
    idle: float | None = None,
    timeout: float = 20.0,
) -> tuple[list[Frame], bytes]:
    """Frames read from ``url`` until ``until(frames)``, ``max_bytes`` (the
    connection is then dropped, maybe inside a frame), ``idle`` seconds with
    no event, or the server ends it."""
    got: list[Frame] = []
    buf = b""
    n = 0
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            while not until(got):
                size = 4096 if max_bytes is None else min(4096, max_bytes - n)
                if size <= 0:
                    break
                try:
                    chunk = await asyncio.wait_for(resp.content.read(size), idle)
                except TimeoutError:
                    break
                if not chunk:
                    break
                n += len(chunk)
                frames, buf = parse(buf + chunk)
                got.extend(frames)
    return got, buf


def run(coro: Any) -> Any:
    return asyncio.run(coro)
