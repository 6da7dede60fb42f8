"""spanvisor's webhook sink: a signed POST per applied intervention (docs/reference/webhooks.md).

``verify`` is for receivers: ``spanvisor_webhook.verify(secret, timestamp,
body, signature)``. Kept light on purpose: ``Config.load()`` imports every
sink class to collect its settings, so aiohttp is only imported when the
sink starts.
"""

from spanvisor_webhook.signing import signature, verify
from spanvisor_webhook.sink import WebhookSink

__all__ = ["WebhookSink", "signature", "verify"]
