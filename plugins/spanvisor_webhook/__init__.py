"""spanvisor's webhook sink: a signed POST per applied intervention (docs/reference/webhooks.md).

``verify`` is for receivers: ``spanvisor_webhook.verify(secret, timestamp,
body, signature)``. Its names are imported when first used (:mod:`spanvisor.lazy`), so the
configuration reads ``.settings`` without importing the sink; aiohttp is
imported only when the sink starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanvisor.lazy import exports

if TYPE_CHECKING:
    from .signing import signature, verify
    from .sink import WebhookSink

__all__ = ["WebhookSink", "signature", "verify"]
__getattr__ = exports(__name__, {"WebhookSink": ".sink", "signature": ".signing", "verify": ".signing"})
