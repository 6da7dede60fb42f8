"""``/metrics`` served over HTTP on the pipeline's loop."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest
from prom_streams import S, lifecycle, make_ctx
from prometheus_client import CollectorRegistry

from spanvisor_prometheus import PrometheusSink

T0 = 1_700_000_000 * S
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


async def fetch(url: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def test_metrics_endpoint_on_port_zero() -> None:
    async def main() -> None:
        sink = PrometheusSink(registry=CollectorRegistry())
        await sink.start(make_ctx(metrics_port=0))
        assert sink.bound_port and sink.bound_port > 0
        await sink.export(lifecycle("rivet", 1, T0, checkpoints=2))
        url = f"http://127.0.0.1:{sink.bound_port}/metrics"
        status, ctype, text = await fetch(url)
        assert status == 200 and ctype.startswith("text/plain")
        assert 'spanvisor_tasks_started_total{agent="rivet",repo="acme/app"} 1.0' in text
        assert "trace_id" not in text
        status, ctype, text = await fetch(url, OPENMETRICS)
        assert status == 200 and ctype.startswith("application/openmetrics-text")
        assert '# {trace_id="' in text and text.rstrip().endswith("# EOF")
        status, _, _ = await fetch(f"http://127.0.0.1:{sink.bound_port}/other")
        assert status == 404
        await sink.shutdown(2)
        with pytest.raises(aiohttp.ClientConnectionError):
            await fetch(url)

    asyncio.run(main())


def test_busy_port_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def main() -> None:
            sink = PrometheusSink(registry=CollectorRegistry())
            with caplog.at_level(logging.ERROR, logger="spanvisor.prometheus"):
                await sink.start(make_ctx(metrics_port=port))
            assert sink.server is None
            assert "cannot serve metrics" in caplog.text
            checks = await PrometheusSink.check(make_ctx(metrics_port=port).config)
            assert checks[0][1] is False
            await sink.shutdown(1)

        asyncio.run(main())
