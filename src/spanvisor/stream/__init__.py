"""The live event stream: every domain event as public JSON, fanned out to
Server-Sent Events clients with replay (docs/reference/events.md).

``body`` is the one public JSON shape of an event (webhooks send the same
body for interventions); ``ring`` keeps the recent stream for replay;
``feed`` is where positions come from (this process, or a shared database
through the ``spanvisor.event_feeds`` entry points); ``sink`` takes the
pipeline's events in order; ``sse`` serves ``GET /v1/events``.
"""
