"""Settings of the way back from people to agents: where an agent or the
CLI finds the control API, and its token. Agents read them straight from the
environment (:mod:`spanvisor.control.client`); this table lets ``spanvisor
check`` show them and the configuration know them (entry point
``spanvisor.settings``: ``control``)."""

from __future__ import annotations

from spanvisor.config import Setting, p_choice, p_duration, p_list, p_opt_str
from spanvisor.control.oidc import p_algorithms

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
    # People proven by the company's identity provider (docs/reference/policy.md#people-proven-by-your-identity-provider).
    Setting(
        "oidc_issuer",
        "SPANVISOR_OIDC_ISSUER",
        p_opt_str,
        None,
        "On `spanvisor serve`: the identity provider whose tokens prove people (the `iss` of its tokens, "
        "e.g. https://login.example.com/oauth2/default): the control API takes a person's OIDC ID token or JWT "
        "access token and records who they are and their groups. On the CLI: where `spanvisor login` signs in. "
        "Unset: people are proven by SPANVISOR_DECIDERS only.",
        "an https:// URL",
    ),
    Setting(
        "oidc_audience",
        "SPANVISOR_OIDC_AUDIENCE",
        p_list,
        (),
        "The audiences a token must name (`aud`): the client id for ID tokens, the API's audience for access "
        "tokens. Required with SPANVISOR_OIDC_ISSUER.",
        "comma-separated audiences",
    ),
    Setting(
        "oidc_jwks_url",
        "SPANVISOR_OIDC_JWKS_URL",
        p_opt_str,
        None,
        "The provider's signing keys (JWKS). Unset: the `jwks_uri` of the issuer's /.well-known/openid-configuration.",
        "a URL",
    ),
    Setting(
        "oidc_jwks_file",
        "SPANVISOR_OIDC_JWKS_FILE",
        p_opt_str,
        None,
        "The provider's signing keys from a file (a JWKS, JSON) instead of a URL: for servers that may not "
        "reach the provider. Read again when a token names a key not in it.",
        "a file path",
    ),
    Setting(
        "oidc_person_claim",
        "SPANVISOR_OIDC_PERSON_CLAIM",
        p_opt_str,
        "email",
        "The claim naming the person (a dotted path reads nested claims). Default: email.",
        "e.g. email, preferred_username, upn, sub",
    ),
    Setting(
        "oidc_groups_claim",
        "SPANVISOR_OIDC_GROUPS_CLAIM",
        p_opt_str,
        "groups",
        "The claim listing the person's groups (a dotted path reads nested claims, e.g. realm_access.roles); "
        "a token without it is refused. `none`: groups are not read from tokens. Default: groups.",
        "a claim name, or none",
    ),
    Setting(
        "oidc_algorithms",
        "SPANVISOR_OIDC_ALGORITHMS",
        p_algorithms,
        ("RS256",),
        "The signing algorithms accepted: public-key ones only (none and HS* are refused here). Default: RS256.",
        "comma-separated, e.g. RS256,ES256",
    ),
    Setting(
        "oidc_leeway",
        "SPANVISOR_OIDC_LEEWAY",
        p_duration,
        60.0,
        "Clock skew allowed when checking a token's exp, nbf and iat. Default: 60s.",
        "a duration, e.g. 30s",
    ),
    Setting(
        "oidc_jwks_refresh",
        "SPANVISOR_OIDC_JWKS_REFRESH",
        p_duration,
        3600.0,
        "How long the provider's keys are kept before they are read again. Default: 1h.",
        "a duration",
    ),
    Setting(
        "oidc_jwks_min_interval",
        "SPANVISOR_OIDC_JWKS_MIN_INTERVAL",
        p_duration,
        30.0,
        "The shortest time between two reads of the provider's keys: a token naming an unknown key reads "
        "them again (a rotation) at most this often. Default: 30s.",
        "a duration",
    ),
    Setting(
        "oidc_client_id",
        "SPANVISOR_OIDC_CLIENT_ID",
        p_opt_str,
        None,
        "`spanvisor login`: the OAuth client id (a public client allowed the device authorization grant).",
        "a client id",
    ),
    Setting(
        "oidc_scopes",
        "SPANVISOR_OIDC_SCOPES",
        p_opt_str,
        "openid profile email offline_access",
        "`spanvisor login`: the scopes asked (offline_access brings a refresh token; some providers need "
        "`groups`). Default: openid profile email offline_access.",
        "space-separated scopes",
    ),
    Setting(
        "oidc_login_token",
        "SPANVISOR_OIDC_LOGIN_TOKEN",
        p_choice("id_token", "access_token"),
        "id_token",
        "`spanvisor login`: which token the CLI sends: the ID token (audience: the client id) or the access "
        "token (audience: your API). It must be one SPANVISOR_OIDC_AUDIENCE on the server accepts.",
        "id_token or access_token",
    ),
    Setting(
        "login_file",
        "SPANVISOR_LOGIN_FILE",
        p_opt_str,
        None,
        "Where `spanvisor login` keeps your tokens (mode 0600). Default: "
        "$XDG_STATE_HOME/spanvisor/login.json, else ~/.local/state/spanvisor/login.json.",
        "a file path",
    ),
    Setting(
        "break_glass_group",
        "SPANVISOR_BREAK_GLASS_GROUP",
        p_opt_str,
        None,
        "On `spanvisor serve`: the group whose members may break glass: approve a request alone, whatever "
        "people and groups it needs, with a reason (`spanvisor approve --break-glass --reason …`); recorded as "
        "such, posted, counted. Unset: nobody may.",
        "a group name",
    ),
    Setting(
        "policy",
        "SPANVISOR_POLICY",
        p_opt_str,
        None,
        "The central policy (a TOML file, or a directory of them): rules no agent can weaken. Each approval "
        "request needs at least what they require (people, groups) and a central deny is never approved; "
        "`serve` publishes it to the coding agents' hooks and reloads it on change and on SIGHUP "
        "(docs/reference/policy.md). Unset: none.",
        "a file or directory path",
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
        "run_task_agent",
        "SPANVISOR_TASK_AGENT",
        p_opt_str,
        None,
        "The agent a task `spanvisor run` starts is under (as Slack routes, budgets and `spanvisor tasks --agent` "
        "name it; `--agent` sets it, and the launcher passes it on to the CLI): the launcher's records and the "
        "CLI's own (as `spanvisor.agent` in its OTEL_RESOURCE_ATTRIBUTES) name this one. Unset: `spanvisor.agent` or `agent.name` in "
        "OTEL_RESOURCE_ATTRIBUTES, else the CLI (claude-code, codex_exec, gemini-cli, …).",
        "an agent id",
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
        "central_policy",
        "SPANVISOR_CENTRAL_POLICY",
        p_opt_str,
        None,
        "How `spanvisor hook` obeys the server's central policy: `auto` (the default: when the server publishes "
        "one), `required` (a server that cannot be asked makes the policy's on_unreachable answer), `off`.",
        "auto, required or off",
    ),
    Setting(
        "central_policy_ttl",
        "SPANVISOR_CENTRAL_POLICY_TTL",
        p_opt_str,
        None,
        "How long `spanvisor hook` uses its copy of the central policy before asking the server again. "
        "Default: 15 (seconds; 0: every call).",
        "seconds",
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
        "system_gate",
        "SPANVISOR_SYSTEM_GATE",
        p_opt_str,
        None,
        "A system gate's socket (`spanvisor gate serve`) that `spanvisor run` tells its session to, besides "
        "those its CLI's hook entries name (`--gate SOCKET`): the calls of its CLI's hooks are then its task's.",
        "an absolute socket path",
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
        "hook_started",
        "SPANVISOR_HOOK_STARTED",
        p_opt_str,
        None,
        "Set by the launcher's small hook client for the full `spanvisor hook` it hands a call to: when the "
        "CLI started the hook, so one deadline counts from there. Not for setting by hand.",
        "a Unix time in seconds",
    ),
    Setting(
        "late_cancel_look",
        "SPANVISOR_LATE_CANCEL_LOOK",
        p_opt_str,
        None,
        "Set by `spanvisor hook` for the process that finishes a cancel look its answer could not wait for: "
        "the task whose cancel it reads and remembers for the session's next call. Not for setting by hand.",
        "a task id",
    ),
    Setting(
        "hook_cancel_wait",
        "SPANVISOR_HOOK_CANCEL_WAIT",
        p_duration,
        0.1,
        "How long after its start `spanvisor hook` waits, before it lets a policy's allow stand, for the "
        "control API to say whether the session's task was cancelled (a session without the launcher). A look "
        "that comes later misses the cancel for that call (the next call sees it); raise it for a busy or "
        "distant `serve`, at that cost to each allowed call while `serve` is slow. At most 5 s. A locked hook "
        "ignores it (the agent's environment could shorten it): give it `--cancel-wait` on its command line "
        "(`spanvisor gate serve --cancel-wait` for the system gate).",
        "a duration, e.g. 100ms or 0.5s",
    ),
    Setting(
        "bin",
        "SPANVISOR_BIN",
        p_opt_str,
        None,
        "Read by OpenCode's gate plugin, Cline's hook script and pi's extension (`spanvisor assets export`): the `spanvisor` "
        "command they run for each tool call. Default: `spanvisor` on the PATH.",
        "a command path",
    ),
    Setting(
        "gate_loaded",
        "SPANVISOR_GATE_LOADED",
        p_opt_str,
        None,
        "Set by `spanvisor run --gate` for a CLI whose gate is code it loads (OpenCode's plugin, pi's extension): "
        "a file the gate writes as it loads, so the launcher can say when a tool ran with the gate never loaded. "
        "Not for setting by hand.",
        "a file path",
    ),
    Setting(
        "hook_sessions",
        "SPANVISOR_HOOK_SESSIONS",
        p_opt_str,
        None,
        "Where `spanvisor hook` keeps what each session's turn and session-end hooks said and a cancel it saw, "
        "for a session run without the launcher. Default: SPANVISOR_DATA_DIR/hook-sessions, else "
        "$XDG_STATE_HOME/spanvisor/hook-sessions (~/.local/state/spanvisor/hook-sessions).",
        "a directory",
    ),
    Setting(
        "cli_settings",
        "SPANVISOR_CLI_SETTINGS",
        p_opt_str,
        None,
        "Set by `spanvisor run`: the settings file it started the CLI with (`--settings`), read by "
        "`spanvisor hook` for the CLI's own hook timeout. Not for setting by hand.",
        "a file path",
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
