"""The core's settings table: one row per setting, in one place. Each other
part (the receiver, every sink) declares its own table next to its code."""

from __future__ import annotations

import os
from pathlib import Path

from spanvisor.config.parsers import (
    Setting,
    p_auto_bool,
    p_choice,
    p_duration,
    p_int,
    p_int_map,
    p_list,
    p_opt_str,
    p_pos_int,
    p_provisional,
    p_ratios,
    p_size,
    p_str,
)


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "spanvisor")


# --- the core table -------------------------------------------------------

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "sinks",
        "SPANVISOR_SINKS",
        p_list,
        ("auto",),
        "Sinks to run, by entry-point name. 'auto' runs every installed sink whose own settings enable it, and the console when no Slack token is set.",
        "comma-separated names, or auto",
    ),
    Setting(
        "data_dir",
        "SPANVISOR_DATA_DIR",
        p_str,
        None,
        "Where the embedded database and the outbox live. Default: $XDG_DATA_HOME/spanvisor.",
        "a directory path",
    ),
    Setting(
        "log_format",
        "SPANVISOR_LOG_FORMAT",
        p_choice("human", "json"),
        "human",
        "Log line format.",
        "human or json",
    ),
    Setting(
        "log_level",
        "SPANVISOR_LOG_LEVEL",
        p_choice("debug", "info", "warning", "error"),
        "info",
        "Log level.",
        "debug, info, warning or error",
    ),
    Setting(
        "context_thresholds",
        "SPANVISOR_CONTEXT_THRESHOLDS",
        p_ratios,
        (0.70, 0.85),
        "Context-window ratios that raise a warning; the highest is critical.",
        "ratios in (0, 1], e.g. 0.7,0.85",
    ),
    Setting(
        "model_context_windows",
        "SPANVISOR_MODEL_CONTEXT_WINDOWS",
        p_int_map,
        {},
        "Overrides and additions to the built-in table of model context windows.",
        "model=tokens,... (prefix match on the model name)",
    ),
    Setting(
        "poll_interval_s",
        "SPANVISOR_POLL_INTERVAL",
        p_duration,
        1.0,
        "How often open task spans are read for live progress (in-process only).",
        "a duration, e.g. 1s",
    ),
    Setting(
        "live_channel",
        "SPANVISOR_LIVE_CHANNEL",
        p_choice("auto", "off"),
        "auto",
        "Whether the agent helpers also say what they write on a task's open root as OpenTelemetry log records "
        "when its spans leave the process (docs/reference/conventions.md#the-live-channel).",
        "auto or off",
    ),
    Setting(
        "heartbeat_s",
        "SPANVISOR_HEARTBEAT",
        p_duration,
        30.0,
        "How often the agent helpers send a live-channel heartbeat for an open task that says nothing else.",
        "a duration, e.g. 30s",
    ),
    Setting(
        "replica_id",
        "SPANVISOR_REPLICA_ID",
        p_opt_str,
        None,
        "Who this process is to the shared state store. Default: host and data directory for `serve`, host and pid "
        "in-process. Give each replica its own; keep it across restarts.",
        "a short name",
    ),
    Setting(
        "stamp_spans",
        "SPANVISOR_STAMP_SPANS",
        p_auto_bool,
        "auto",
        "Stamp agent.task.id, agent.task.root_span_id and agent.id on every span of a task (in-process), so spans "
        "exported elsewhere (a Collector to spanvisor serve) can be grouped. auto: only when the TracerProvider has "
        "another span processor (an exporter) beside spanvisor's when the task starts; true forces stamping (spans "
        "leaving another way), false turns it off.",
        "auto, true or false",
    ),
    Setting(
        "root_hold_s",
        "SPANVISOR_ROOT_HOLD",
        p_duration,
        30.0,
        "Spans that end before their ancestors (exporter and receiver paths) wait at most this long for them.",
        "a duration",
    ),
    Setting(
        "provisional",
        "SPANVISOR_PROVISIONAL",
        p_provisional,
        ("agent", "tool", "calls=2"),
        "When spans of a trace whose root has not arrived yet (exporter and receiver paths) open its task "
        "provisionally: once they hold an agent span or a span naming an agent (agent), a tool call (tool), or N "
        "model calls (calls=N). Until then nothing is shown in any sink, and a trace that ends with no task is "
        "counted as held back. off: a task shows when its root arrives.",
        "off, or agent, tool, calls=N separated by commas",
    ),
    Setting(
        "pending_max_bytes",
        "SPANVISOR_PENDING_BYTES",
        p_size,
        64 * 1024**2,  # spanvisor.tracking.tracebuffer.DEFAULT_PENDING_BYTES
        "Memory, by an estimate made as each span is kept, for spans waiting for their task root (exporter and "
        "receiver paths; at most 200,000 spans as well). Beyond it whole traces are dropped and counted: first those "
        "that show nothing of an agent (no model call, tool call or agent span), oldest first, then the others, "
        "oldest first.",
        "a size, e.g. 64MiB",
    ),
    Setting(
        "pending_plain_ttl_s",
        "SPANVISOR_PENDING_PLAIN_TTL",
        p_duration,
        300.0,
        "How long a trace waiting for its task root that shows nothing of an agent is kept with no new span "
        "(exporter and receiver paths); one that shows an agent is kept an hour.",
        "a duration, e.g. 5m",
    ),
    Setting(
        "max_open_tasks",
        "SPANVISOR_MAX_OPEN_TASKS",
        p_pos_int,
        10_000,
        "Open tasks tracked at once; beyond it one is evicted by what it has shown, then its age, and counted.",
        "a positive integer",
    ),
    Setting(
        "dedup_window",
        "SPANVISOR_DEDUP_WINDOW",
        p_pos_int,
        200_000,
        "How many recently seen span ends are remembered so a resent span is not counted twice.",
        "a positive integer",
    ),
    Setting(
        "inbox_size",
        "SPANVISOR_INBOX_SIZE",
        p_pos_int,
        100_000,
        "Entries waiting for the tracker (a span start or end in-process, one batch from the receiver); beyond it new ones are dropped and counted (the receiver answers 503 instead).",
        "a positive integer",
    ),
    Setting(
        "queue_size",
        "SPANVISOR_QUEUE_SIZE",
        p_pos_int,
        10_000,
        "Events waiting per sink; beyond it events for that sink are dropped and counted.",
        "a positive integer",
    ),
    Setting(
        "batch_size",
        "SPANVISOR_BATCH_SIZE",
        p_pos_int,
        512,
        "Most events handed to a sink in one export call.",
        "a positive integer",
    ),
    Setting(
        "batch_delay_s",
        "SPANVISOR_BATCH_DELAY",
        p_duration,
        0.1,
        "Longest a sink's batch waits to fill.",
        "a duration",
    ),
    Setting(
        "log_tail_lines",
        "SPANVISOR_LOG_TAIL_LINES",
        p_pos_int,
        20,
        "Log records kept per open task for its log tail (OpenTelemetry logs with the task's trace id); a task that "
        "does not complete carries its last ones, at most 4 KB.",
        "a positive integer",
    ),
    Setting(
        "log_tail_level",
        "SPANVISOR_LOG_TAIL_LEVEL",
        p_choice("debug", "info", "warning", "error"),
        "warning",
        "Lowest level of the log records a task's log tail keeps (plus the last SPANVISOR_LOG_TAIL_CONTEXT records "
        "of any level before an error).",
        "debug, info, warning or error",
    ),
    Setting(
        "log_tail_context",
        "SPANVISOR_LOG_TAIL_CONTEXT",
        p_int,
        5,
        "Records below the log tail's level kept just before an error record, or a failure (0: none).",
        "a non-negative integer",
    ),
    Setting(
        "log_tail_wait_s",
        "SPANVISOR_LOG_TAIL_WAIT",
        p_duration,
        2.0,
        "On the exporter and receiver paths, how long a failed task's end waits for log records still on their way "
        "(logs and traces travel apart through a Collector); 0: not at all. In-process there is no wait.",
        "a duration",
    ),
    Setting(
        "state_store",
        "SPANVISOR_STATE_STORE",
        p_str,
        "auto",
        "Shared state store: memory, an entry-point name (postgres), or auto (postgres when the postgres sink runs).",
        "auto, memory or postgres",
    ),
)

# Core settings whose default stands in for a bad value in an agent's
# process: each tunes or words one part (context warnings, log tails, queue
# sizes, stall times), so one error line and the default keep the rest of
# spanvisor running there. The others stay blocking (spanvisor off in that
# process): they choose where events go (sinks, data_dir, state_store), who
# the process is (replica_id), how spans are read (stamp_spans, live_channel)
# or what limits an agent (prices, budgets): a default there would send
# events elsewhere or drop a limit without anyone choosing it.
DEFAULT_STANDS_IN: frozenset[str] = frozenset(
    {
        "log_format",
        "log_level",
        "context_thresholds",
        "model_context_windows",
        "poll_interval_s",
        "heartbeat_s",
        "root_hold_s",
        "pending_max_bytes",
        "pending_plain_ttl_s",
        "provisional",
        "max_open_tasks",
        "dedup_window",
        "inbox_size",
        "queue_size",
        "batch_size",
        "batch_delay_s",
        "log_tail_lines",
        "log_tail_level",
        "log_tail_context",
        "log_tail_wait_s",
        "budget_levels",
        "stall_after_s",
        "lost_after_s",
        "stall_after_by_agent",
    }
)


def shown_default(setting: Setting) -> str:
    """A setting's default as a person would write it (``0.7,0.85``, ``none``)."""
    value = setting.default
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return "none" if value is None else str(value)
