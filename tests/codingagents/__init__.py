"""The conformance matrix: the real coding-agent CLIs (pinned in npm/), run
offline against fake model APIs on loopback, their telemetry sent to a real
``spanvisor serve`` with PostgreSQL and the fake Slack."""
