"""The control API in an agent's own process, when ``SPANVISOR_CONTROL_LISTEN``
names an address: ``spanvisor approvals`` and ``spanvisor approve`` in a
terminal then answer the agent's approval requests without Slack or
``spanvisor serve``.

The server is the one the demo runs (``spanvisor.receiver.control_thread``),
found through the ``spanvisor.control_servers`` entry point, as the pipeline
finds the stream sink: the processor's layer does not import the
receiver's. It is loaded and started on the thread that builds the
processor or exporter (nothing is imported on a background thread while the
agent runs), once per pipeline, and a failure is one warning: the agent runs
on without it.
"""

from __future__ import annotations

import logging
from typing import Any

from spanvisor.entrypoints import entry_points

log = logging.getLogger("spanvisor")

GROUP = "spanvisor.control_servers"
_ATTR = "_spanvisor_control_server"


def parse_listen(raw: str) -> tuple[str, int]:
    """``host:port`` or a port alone (loopback). Raises ValueError naming what is accepted."""
    text = raw.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"SPANVISOR_CONTROL_LISTEN={raw!r}: give host:port or a port (1-65535), e.g. 127.0.0.1:4320")
    return host, port


def serve_control(pipeline: Any) -> Any | None:
    """Start the pipeline's control API when configured; the running server, or None."""
    running = getattr(pipeline, _ATTR, None)
    if running is not None:  # started, or tried and said why (once per pipeline)
        return running or None
    raw = pipeline.config.get("control_listen")
    if not raw:
        return None
    try:
        host, port = parse_listen(str(raw))
        [ep] = entry_points(group=GROUP, name="local")
        server = ep.load()(pipeline, host, port, pipeline.config.get("control_token"))
        server.start()
    except Exception as exc:  # the agent runs on without it
        setattr(pipeline, _ATTR, False)
        log.warning("no control API in this process (%s)", exc)
        return None
    setattr(pipeline, _ATTR, server)
    if server.port != port:
        log.warning("%s:%d is taken; the control API listens on port %d instead", host, port, server.port)
    log.info("control API on %s: `spanvisor approvals --url %s` lists what waits", server.url, server.url)
    return server


def stop_control(pipeline: Any) -> None:
    server = getattr(pipeline, _ATTR, None)
    if not server:
        return
    setattr(pipeline, _ATTR, None)
    try:
        server.stop()
    except Exception as exc:
        log.debug("stopping the control API: %s", exc)


__all__ = ["GROUP", "parse_listen", "serve_control", "stop_control"]
