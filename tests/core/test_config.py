"""Config: one ConfigError naming the setting and what it accepts; TOML and
environment precedence; secrets masked in ``Config.rows()``."""

from __future__ import annotations

from pathlib import Path

import pytest

from spanvisor.config import CORE_SETTINGS, Config, ConfigError, Setting, mask, p_opt_str

SECRET_SETTINGS = (
    Setting("demo_token", "SPANVISOR_DEMO_TOKEN", p_opt_str, None, "A bot token.", "xoxb-…", secret=True),
    Setting("demo_dsn", "SPANVISOR_DEMO_DSN", p_opt_str, None, "A database URL.", "postgresql://…", secret=True),
)


@pytest.mark.parametrize(
    ("env", "setting", "accepts"),
    [
        ({"SPANVISOR_INBOX_SIZE": "lots"}, "inbox_size", "a positive integer"),
        ({"SPANVISOR_INBOX_SIZE": "-5"}, "inbox_size", "a positive integer"),
        ({"SPANVISOR_CONTEXT_THRESHOLDS": "0.7,1.5"}, "context_thresholds", "ratios in (0, 1]"),
        ({"SPANVISOR_CONTEXT_THRESHOLDS": "nan"}, "context_thresholds", "ratios in (0, 1]"),
        ({"SPANVISOR_POLL_INTERVAL": "soon"}, "poll_interval_s", "a duration"),
        ({"SPANVISOR_LOG_LEVEL": "loud"}, "log_level", "debug, info, warning or error"),
        ({"SPANVISOR_MODEL_CONTEXT_WINDOWS": "gpt-9"}, "model_context_windows", "model=tokens"),
        ({"SPANVISOR_BATCH_DELAY": "inf"}, "batch_delay_s", "a duration"),
    ],
)
def test_bad_value_raises_one_clear_error(env: dict[str, str], setting: str, accepts: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.load(env=env, extra=())
    msg = str(err.value)
    assert msg.startswith(f"{setting} (env {next(iter(env))})"), msg
    assert repr(next(iter(env.values()))) in msg
    assert accepts in msg


def test_bad_secret_is_not_echoed() -> None:
    def strict(v: object) -> str:
        raise ValueError(v)

    token = Setting("demo_token", "SPANVISOR_DEMO_TOKEN", strict, None, "A bot token.", "xoxb-…", secret=True)
    with pytest.raises(ConfigError) as err:
        Config.load(env={"SPANVISOR_DEMO_TOKEN": "xoxb-1234-secret"}, extra=(token,))
    assert "xoxb-1234-secret" not in str(err.value)
    assert "<secret>" in str(err.value) and "demo_token" in str(err.value)


def test_defaults() -> None:
    c = Config.load(env={}, extra=())
    assert c["context_thresholds"] == (0.70, 0.85)
    assert c["sinks"] == ("auto",)
    assert all(c.sources[s.name] == "default" for s in CORE_SETTINGS)


def test_toml_and_env_precedence(tmp_path: Path) -> None:
    path = tmp_path / "spanvisor.toml"
    path.write_text(
        """
[spanvisor]
inbox_size = 500
queue_size = 2_000
context_thresholds = [0.6, 0.9]
poll_interval_s = "250ms"
model_context_windows = { "acme-llm" = 64000 }
"""
    )
    env = {"SPANVISOR_CONFIG": str(path), "SPANVISOR_QUEUE_SIZE": "3000"}
    c = Config.load(env=env, extra=())
    assert c["inbox_size"] == 500 and c.sources["inbox_size"] == f"file {path}"
    assert c["queue_size"] == 3000 and c.sources["queue_size"] == "env SPANVISOR_QUEUE_SIZE"  # env wins
    assert c["context_thresholds"] == (0.6, 0.9)
    assert c["poll_interval_s"] == 0.25
    assert c["model_context_windows"] == {"acme-llm": 64000}
    assert c["batch_size"] == 512 and c.sources["batch_size"] == "default"
    # An empty env var does not override the file.
    c = Config.load(env={**env, "SPANVISOR_INBOX_SIZE": ""}, extra=())
    assert c["inbox_size"] == 500
    # Code overrides beat both.
    c = Config.load(env=env, extra=(), overrides={"queue_size": 7})
    assert c["queue_size"] == 7 and c.sources["queue_size"] == "code"


def test_bad_value_in_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "spanvisor.toml"
    path.write_text('inbox_size = "many"\n')
    with pytest.raises(ConfigError, match=rf"inbox_size \(file {path}\) = 'many' is invalid; accepted: a positive"):
        Config.load(env={"SPANVISOR_CONFIG": str(path)}, extra=())


def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(env={"SPANVISOR_CONFIG": str(tmp_path / "missing.toml")}, extra=())
    bad = tmp_path / "bad.toml"
    bad.write_text("inbox_size = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.load(env={"SPANVISOR_CONFIG": str(bad)}, extra=())


def test_a_setting_declared_twice_is_an_error() -> None:
    dup = Setting("inbox_size", "X_INBOX", p_opt_str, None, "again")
    with pytest.raises(ConfigError, match="declared twice"):
        Config.load(env={}, extra=(dup,))


def test_secrets_are_masked_in_rows() -> None:
    env = {
        "SPANVISOR_DEMO_TOKEN": "xoxb-1234-5678-abcdefgh",
        "SPANVISOR_DEMO_DSN": "postgresql://spanvisor:hunter2@db.internal:5432/audit",
    }
    c = Config.load(env=env, extra=SECRET_SETTINGS)
    rows = {name: (var, value, source) for name, var, value, source in c.rows()}
    assert rows["demo_token"] == ("SPANVISOR_DEMO_TOKEN", "**** (23 chars)", "env SPANVISOR_DEMO_TOKEN")
    assert rows["demo_dsn"][1] == "postgresql://spanvisor:****@db.internal:5432/audit"
    text = repr(c.rows())
    assert "xoxb-1234" not in text and "hunter2" not in text
    assert rows["inbox_size"][1] == "100000"
    assert Config.load(env={}, extra=SECRET_SETTINGS).rows()[-1][2] == "-"


def test_mask() -> None:
    assert mask(None) == "-" and mask("") == "-"
    assert mask("s3cr3t") == "**** (6 chars)"
    assert mask("https://user:pw@example.com/x") == "https://user:****@example.com/x"
    assert "pw" not in mask("postgres://u:pw@h/db")


def test_plugin_settings_join_the_table() -> None:
    """Each installed sink's own settings are collected through its entry point."""
    c = Config.load(env={})
    names = {s.name for s in c.settings}
    assert {"console_interval_s", "console_color"} <= names
    assert len(names) == len(c.settings)


def test_secrets_in_urls_and_dsns_are_masked_and_redacted() -> None:
    from spanvisor.config import mask
    from spanvisor.redaction import redact

    assert mask("postgresql://svc:p@ss:w0rd@db:5432/audit") == "postgresql://svc:****@db:5432/audit"
    assert "s3cr3t" not in mask("postgresql://db/audit?password=s3cr3t&sslmode=require")
    line = redact("host=db user=svc password=s3cr3t dbname=audit; postgresql://svc:p@ss:w0rd@db/a; Bearer abc.def")
    assert "s3cr3t" not in line and "p@ss" not in line and "abc.def" not in line


def test_unknown_toml_keys_and_variables_are_named_with_the_closest_setting(tmp_path: Path) -> None:
    """A misspelt key must not be silently ignored."""
    from spanvisor.cli.main import main

    toml = tmp_path / "spanvisor.toml"
    toml.write_text('poll_interval = "2s"\n')
    loaded = Config.load(env={"SPANVISOR_SINK": "console"}, toml_path=str(toml))
    assert any("'poll_interval'" in u and "did you mean 'poll_interval_s'" in u for u in loaded.unknown), loaded.unknown
    assert any("SPANVISOR_SINK;" in u and "'SPANVISOR_SINKS'" in u for u in loaded.unknown), loaded.unknown
    assert Config.load(env={"SPANVISOR_SINKS": "console"}).unknown == ()
    assert main(["--config", str(toml), "check"]) == 2


def test_every_variable_the_code_reads_is_known() -> None:
    """A SPANVISOR_* variable read anywhere (the agent helper reads some)
    must not make `spanvisor emit` or `serve` refuse to start when an
    agent's environment sets it."""
    import re

    from spanvisor.config.loading import unknown_keys

    root = Path(__file__).resolve().parents[2]
    read = {
        m.group(1)
        for base in ("src", "plugins")
        for path in (root / base).rglob("*.py")
        for m in re.finditer(r"[\"'](SPANVISOR_[A-Z0-9_]+)[\"']", path.read_text())
    }
    assert {"SPANVISOR_HEARTBEAT", "SPANVISOR_LIVE_CHANNEL", "SPANVISOR_SINKS"} <= read
    assert unknown_keys(Config.load(env={}).settings, dict.fromkeys(read, ""), {}, "") == []
