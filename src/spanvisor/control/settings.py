"""Settings of the way back from people to agents: where an agent or the
CLI finds the control API, and its token. Agents read them straight from the
environment (:mod:`spanvisor.control.client`); this table lets ``spanvisor
check`` show them and the configuration know them (entry point
``spanvisor.settings``: ``control``)."""

from __future__ import annotations

from spanvisor.config import Setting, p_opt_str

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "control_url",
        "SPANVISOR_CONTROL_URL",
        p_opt_str,
        None,
        "Control API of `spanvisor serve` (e.g. http://spanvisor:4318): agents read decisions from it, "
        "`spanvisor approve` and friends send them to it. Unset: agents read this process's pipeline; "
        "the CLI uses http://127.0.0.1:4318.",
        "a URL",
    ),
    Setting(
        "control_listen",
        "SPANVISOR_CONTROL_LISTEN",
        p_opt_str,
        None,
        "In an agent's process (the processor or exporter): serve the control API on this address, so "
        "`spanvisor approvals --url http://ADDRESS` and `spanvisor approve` in a terminal answer the agent "
        "without Slack or `spanvisor serve`. SPANVISOR_CONTROL_TOKEN, when set, is required of callers. "
        "Unset: not served.",
        "host:port or a port, e.g. 127.0.0.1:4320",
    ),
    Setting(
        "control_token",
        "SPANVISOR_CONTROL_TOKEN",
        p_opt_str,
        None,
        "Bearer token for the control API (the server's SPANVISOR_OTLP_TOKEN). Default: SPANVISOR_OTLP_TOKEN.",
        "a string",
        secret=True,
    ),
    Setting(
        "decide_token",
        "SPANVISOR_DECIDE_TOKEN",
        p_opt_str,
        None,
        "On `spanvisor serve`: the bearer token posting decisions to the control API needs, instead of the OTLP "
        "token every agent holds (so an agent cannot approve its own request); on the CLI: the token "
        "`spanvisor approve` and friends send. Unset: the OTLP token posts decisions too.",
        "a string",
        secret=True,
    ),
    Setting(
        "deciders_file",
        "SPANVISOR_DECIDERS",
        p_opt_str,
        None,
        "On `spanvisor serve`: a TOML file of people and the SHA-256 of each one's token "
        "(`spanvisor decider-token NAME` makes one). A decision posted with a person's token is theirs, verified; "
        "one posted with the shared decide token is an anonymous operator's. Unset: the name a decision gives.",
        "a file path",
    ),
    # Read by `spanvisor run` and `spanvisor hook` (the coding-agent CLIs'
    # launcher and permission hook), which run next to the agent.
    Setting(
        "otlp_endpoint",
        "SPANVISOR_OTLP_ENDPOINT",
        p_opt_str,
        None,
        "OTLP/HTTP endpoint `spanvisor run` points a coding-agent CLI's telemetry at, and `spanvisor hook` sends "
        "its approval requests to: `spanvisor serve` or a Collector. Unset: http://127.0.0.1:4318.",
        "a URL",
    ),
    # Set by `spanvisor run` for the CLI it starts, read by `spanvisor hook`:
    # Claude Code runs its hooks without any OTEL_* variable, so the task in
    # OTEL_RESOURCE_ATTRIBUTES does not reach them.
    Setting(
        "run_task_id",
        "SPANVISOR_TASK_ID",
        p_opt_str,
        None,
        "The task `spanvisor run` started (set by it for the coding-agent CLI): `spanvisor hook` opens its "
        "approval requests on this task. Unset: `spanvisor.task.id` in OTEL_RESOURCE_ATTRIBUTES, else the "
        "CLI's session id.",
        "a task id",
    ),
    Setting(
        "run_task_owner",
        "SPANVISOR_TASK_OWNER",
        p_opt_str,
        None,
        "The person a coding agent works for, who may reject its tool calls but never approve them "
        "(`spanvisor run` copies `agent.owner` of OTEL_RESOURCE_ATTRIBUTES here). Unset: `agent.owner`.",
        "a person's name or Slack id",
    ),
    Setting(
        "hook_policy",
        "SPANVISOR_HOOK_POLICY",
        p_opt_str,
        None,
        "Policy file (TOML) of `spanvisor hook`: which tool calls are allowed, denied or asked of a person. "
        "Unset: every call is asked.",
        "a file path",
    ),
    Setting(
        "hook_spool",
        "SPANVISOR_HOOK_SPOOL",
        p_opt_str,
        None,
        "Where `spanvisor hook` keeps the audit notes the receiver has not taken yet. "
        "Unset: `<SPANVISOR_DATA_DIR>/hook-spool` when that is set, else `~/.local/state/spanvisor/hook-spool`.",
        "a directory path",
    ),
    Setting(
        "hook_delivery",
        "SPANVISOR_HOOK_DELIVERY",
        p_opt_str,
        None,
        "`off`: `spanvisor hook` starts no background delivery of its spooled notes "
        "(`spanvisor run` still delivers them at a session's end).",
        "off",
    ),
    Setting(
        "local_gate",
        "SPANVISOR_LOCAL_GATE",
        p_opt_str,
        None,
        "`off`: `spanvisor run` opens no local gate, and each hook of its session decides by itself "
        "(the gate's answers are the same; a hook call costs a cold start).",
        "off",
    ),
    Setting(
        "gate_socket",
        "SPANVISOR_GATE_SOCKET",
        p_opt_str,
        None,
        "Set by `spanvisor run` for the CLI it starts: the private socket its hooks ask the launcher's gate on. "
        "Not for setting by hand.",
        "a socket path",
    ),
    Setting(
        "test_fault",
        "SPANVISOR_TEST_FAULT",
        p_opt_str,
        None,
        "For spanvisor's own crash tests only: the step of a decision at which this process stops for good, "
        "to be killed there (spanvisor.control.faults). Never set it: a decision held there is never answered.",
        "decision.before_log, decision.before_answer or decision.before_row",
    ),
)

__all__ = ["SETTINGS"]
