"""The Prometheus sink's own settings (merged into the core table by ``Config.load``)."""

from __future__ import annotations

from typing import Any

from spanvisor.config import Config, Setting, p_int, p_str

MAX_RESULT_NAMES = 20
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def p_results(v: Any) -> tuple[tuple[str, bool], ...]:
    """``"prs_opened:sum, precision"`` -> ``(("prs_opened", True), ("precision", False))``."""
    if v is None:
        return ()
    items = v if isinstance(v, list | tuple) else str(v).split(",")
    out: dict[str, bool] = {}
    for raw in items:
        text = str(raw).strip()
        if not text:
            continue
        name, _, kind = text.partition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not name or not set(name) <= _NAME_CHARS or len(name) > 100 or kind not in ("", "last", "sum"):
            raise ValueError(text)
        out[name] = out.get(name, False) or kind == "sum"
    if len(out) > MAX_RESULT_NAMES:
        raise ValueError(f"at most {MAX_RESULT_NAMES} result names")
    return tuple(out.items())


def p_port(v: Any) -> int | None:
    """A TCP port 1-65535, or nothing (do not serve).

    0 is refused on purpose: a random port cannot be put in a scrape config.
    Tests that want an ephemeral port set it in code (``Config.with_values``).
    """
    if v is None or str(v).strip() == "":
        return None
    n = p_int(v)
    if not 1 <= n <= 65535:
        raise ValueError(v)
    return n


def p_cap(v: Any) -> int:
    n = p_int(v)
    if n < 1:
        raise ValueError(v)
    return n


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "metrics_port",
        "SPANVISOR_METRICS_PORT",
        p_port,
        None,
        "Serve Prometheus metrics at http://<metrics_host>:<port>/metrics from the process "
        "running the pipeline. Unset: metrics are only kept in the registry "
        "(spanvisor serve exposes them on its admin port).",
        "a TCP port 1-65535, or empty",
    ),
    Setting(
        "metrics_host",
        "SPANVISOR_METRICS_HOST",
        p_str,
        "127.0.0.1",
        "Address the metrics endpoint binds to. Use 0.0.0.0 to let a remote Prometheus scrape.",
        "an IP address or host name",
    ),
    Setting(
        "metrics_max_agents",
        "SPANVISOR_METRICS_MAX_AGENTS",
        p_cap,
        50,
        "Distinct agent label values kept in metrics; later agents are reported as 'other' "
        'and counted in spanvisor_label_overflow_total{label="agent"}.',
        "a positive integer",
    ),
    Setting(
        "metrics_max_repos",
        "SPANVISOR_METRICS_MAX_REPOS",
        p_cap,
        50,
        "Distinct (agent, repo) pairs whose repo label is kept on spanvisor_tasks_started_total and "
        "spanvisor_tasks_finished_total; later pairs report repo 'other' and count in "
        'spanvisor_label_overflow_total{label="repo"}.',
        "a positive integer",
    ),
    Setting(
        "metrics_max_models",
        "SPANVISOR_METRICS_MAX_MODELS",
        p_cap,
        50,
        "Distinct (agent, model) pairs whose model label is kept on spanvisor_model_calls_total; later "
        "pairs report model 'other' and count in "
        'spanvisor_label_overflow_total{label="model"}.',
        "a positive integer",
    ),
    Setting(
        "metrics_dedup_window",
        "SPANVISOR_METRICS_DEDUP_WINDOW",
        p_cap,
        100_000,
        "How many recent event ids the metrics sink remembers so a replayed event is not counted twice.",
        "a positive integer",
    ),
    Setting(
        "prometheus_results",
        "SPANVISOR_PROMETHEUS_RESULTS",
        p_results,
        (),
        "Task results (agent.result.<name>) exported as spanvisor_task_result{agent,name}, the last "
        "finished task's value; NAME:sum also adds each task's value to "
        "spanvisor_task_result_sum_total{agent,name}. Unlisted results are never exported.",
        "comma-separated result names, each optionally :sum (at most 20)",
    ),
)


def enabled(config: Config) -> bool:
    """Whether ``SPANVISOR_SINKS=auto`` runs this sink: with a port to serve
    /metrics on. Here, beside the settings, so that choosing the sinks
    imports none that does not run (:func:`spanvisor.sink.auto_sink_names`)."""
    return config.get("metrics_port") is not None
