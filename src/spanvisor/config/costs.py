"""The settings of cost, budgets and early warnings: prices the
operator knows better than genai-prices, the budgets spanvisor warns about,
and when a quiet task counts as stalled."""

from __future__ import annotations

from spanvisor.config.parsers import Setting, p_agents_or_bool, p_duration, p_float_map, p_levels, p_opt_float, p_prices

COST_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model_prices",
        "SPANVISOR_MODEL_PRICES",
        p_prices,
        {},
        "Prices that override or extend genai-prices (private deployments, negotiated rates), "
        "in dollars per million tokens, matched by the longest model-name prefix.",
        "model=input:output[:cached_input],... (a TOML table: model = {input=3, output=15, cache_read=0.3})",
    ),
    Setting(
        "budget_levels",
        "SPANVISOR_BUDGET_LEVELS",
        p_levels,
        (0.8, 1.0),
        "Shares of a budget that warn, once per crossing per scope.",
        "comma-separated shares, e.g. 0.8,1.0",
    ),
    Setting(
        "budget_task_usd",
        "SPANVISOR_BUDGET_TASK_USD",
        p_float_map,
        {},
        "Default dollar budget per task, by agent ('*': every agent); agent.budget.usd on a root overrides it.",
        "agent=dollars,... e.g. *=5,rivet=20",
    ),
    Setting(
        "budget_stop",
        "SPANVISOR_BUDGET_STOP",
        p_agents_or_bool,
        (),
        "Cancel a task once its own budget (dollars or tokens) is reached, as a person's cancel is recorded, "
        "for tasks whose root sets no agent.budget.stop: true (every agent), false or unset (warn only), or agent ids. "
        "Day and month budgets only warn.",
        "true, false, or agent ids, e.g. claude-code,rivet",
    ),
    Setting(
        "budget_agent_day_usd",
        "SPANVISOR_BUDGET_AGENT_DAY_USD",
        p_float_map,
        {},
        "Dollar budget per agent per UTC day ('*': every agent). Kept per process.",
        "agent=dollars,...",
    ),
    Setting(
        "budget_day_usd",
        "SPANVISOR_BUDGET_DAY_USD",
        p_opt_float,
        None,
        "Dollar budget of all agents per UTC day. Kept per process.",
        "dollars",
    ),
    Setting(
        "budget_month_usd",
        "SPANVISOR_BUDGET_MONTH_USD",
        p_opt_float,
        None,
        "Dollar budget of all agents per UTC month. Kept per process.",
        "dollars",
    ),
    Setting(
        "stall_after_s",
        "SPANVISOR_STALL_AFTER",
        p_duration,
        600.0,
        "A running task with no sign of life (a span, a live-channel record or heartbeat) for this long is marked stalled (0: never).",
        "a duration, e.g. 10m",
    ),
    Setting(
        "lost_after_s",
        "SPANVISOR_LOST_AFTER",
        p_duration,
        86_400.0,
        "A running task with no sign of life for this long is finished as lost: its agent died without ending it (0: never).",
        "a duration, e.g. 24h",
    ),
    Setting(
        "stall_after_by_agent",
        "SPANVISOR_STALL_AFTER_BY_AGENT",
        p_float_map,
        {},
        "Stall times by agent, in seconds, over SPANVISOR_STALL_AFTER.",
        "agent=seconds,...",
    ),
)
