"""Coding-agent CLIs as tasks with no code: Claude Code, Codex CLI and Gemini
CLI export OpenTelemetry log records about their sessions; this adapter reads
them (by exact event name) into what the live channel and the trace path
already carry, so each session becomes one task (docs/reference/coding-agents.md).

:mod:`.ids` derives a session's trace and root span ids (the launcher
``spanvisor run`` imports it); :mod:`.common` turns a decoded record into
live facts and synthetic spans; one module per CLI knows its event names.
"""
