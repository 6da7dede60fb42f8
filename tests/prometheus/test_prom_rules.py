"""The alerting rules: promtool's checks and unit tests, plus the house rules
(every alert has for/severity/summary/description/runbook_url, a runbook
section, and unit tests that make it fire and not fire)."""

from __future__ import annotations

import re
import subprocess

from prom_tools import ROOT, RULES_DIR, require

RULES = RULES_DIR / "spanvisor-rules.yml"
RULE_TESTS = RULES_DIR / "spanvisor-rules.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=RULES_DIR, check=False
    )


def alert_blocks() -> dict[str, str]:
    """Alert name -> the text of its rule (this file's own, regular layout)."""
    text = RULES.read_text()
    parts = re.split(r"\n(?=\s+- (?:alert|record): )", text)
    out = {}
    for part in parts:
        m = re.match(r"\s+- alert: (\w+)", part)
        if m:
            out[m.group(1)] = part
    return out


def test_promtool_check_rules_lint_fatal() -> None:
    out = promtool("check", "rules", "--lint-fatal", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", RULE_TESTS.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_follows_the_house_rules() -> None:
    blocks = alert_blocks()
    expected = {
        "SpanvisorContextWindowCritical",
        "SpanvisorTaskFailureRatioHigh",
        "SpanvisorTaskStalled",
        "SpanvisorTaskLost",
        "SpanvisorTaskRunningTooLong",
        "SpanvisorBudgetExceeded",
        "SpanvisorDailySpendHigh",
        "SpanvisorInterventionsDenied",
        "SpanvisorBreakGlassUsed",
        "SpanvisorSinkFailing",
        "SpanvisorEventsDropped",
        "SpanvisorOutboxGrowing",
        "SpanvisorDown",
        "SpanvisorAbsent",
    }
    assert set(blocks) == expected
    runbooks = RUNBOOKS.read_text()
    headings = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbooks, re.M)}
    for name, block in blocks.items():
        assert re.search(r"\n\s+for: \d+[smh]\n", block), name
        severity = re.search(r"\n\s+severity: (\w+)\n", block)
        assert severity and severity.group(1) in SEVERITIES, name
        for key in ("summary", "description", "runbook_url"):
            assert re.search(rf"\n\s+{key}: ", block), f"{name} lacks {key}"
        url = re.search(r'runbook_url: "([^"]+)"', block)
        assert url and url.group(1).endswith(f"docs/runbooks.md#{name.lower()}"), name
        assert name.lower() in headings, f"docs/runbooks.md has no '## {name}' section"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    text = RULE_TESTS.read_text()
    cases = re.findall(r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", text)
    fires = {name for name, empty in cases if not empty}
    silent = {name for name, empty in cases if empty}
    for name in alert_blocks():
        assert name in fires, f"no test makes {name} fire"
        assert name in silent, f"no test shows {name} silent"


def test_alertmanager_example_passes_amtool() -> None:
    # Debian's prometheus-alertmanager; .ci/run installs it, so CI runs this.
    out = subprocess.run(
        [require("amtool"), "check-config", str(ROOT / "docs" / "alertmanager-example.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    # The example's receivers are found, so amtool read the file we meant.
    assert "receivers" in out.stdout
