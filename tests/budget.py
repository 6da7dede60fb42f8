"""pytest plugin: a run that goes wrong still ends with its report.

Two things, both for a CI log that may be cut at the CI's own time limit:

* **Failures are named as they happen.** The controller (or the only
  process) writes ``FAILED <test> (<phase>, <seconds> s)`` the moment a
  report fails, so a run that is killed later still shows what failed, and
  when. Under ``-q`` pytest would otherwise show only an ``F``.
* **A session budget.** A run whose tests hang one after another (each held
  to its deadline: tests/deadline.py) could outlast the CI's limit, and a
  killed run prints no summary. Once a process has spent ``TEST_BUDGET_S``
  seconds (default :data:`DEFAULT_BUDGET_S`; 0 turns it off), it runs no
  further test: it sets ``session.shouldstop``, as ``-x`` does, so pytest
  (and pytest-xdist, which stops every worker for it) ends with
  "Interrupted" and the usual summary of what failed. The run is red.

Loaded from ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import time

import pytest

ENV = "TEST_BUDGET_S"
# A whole run takes 20-40 min on 2 cores; the CI's limit is 90 min, of
# which installing and the checks before the tests take about 10.
DEFAULT_BUDGET_S = 3600.0


def budget_s() -> float | None:
    """The budget in seconds, or None when it is off (``TEST_BUDGET_S=0``)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_S
    try:
        value = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{ENV} must be a number of seconds, got {raw!r}") from None
    return value if value > 0 else None


class _Budget:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.limit_s: float | None = DEFAULT_BUDGET_S
        self.session: pytest.Session | None = None


_state = _Budget()


def pytest_configure(config: pytest.Config) -> None:
    _state.limit_s = budget_s()


def pytest_sessionstart(session: pytest.Session) -> None:
    _state.started = time.monotonic()
    _state.session = session


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    session = _state.session
    if session is None or _state.limit_s is None or session.shouldstop or _is_controller(session.config):
        return
    spent = time.monotonic() - _state.started
    if spent > _state.limit_s:
        session.shouldstop = (
            f"this process spent the session's budget of {_state.limit_s:g} s ({ENV}) "
            f"after {nodeid}; the tests not yet run were left out"
        )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    """pytest-xdist's controller: it runs no test; its workers keep the budget."""
    return config.pluginmanager.has_plugin("dsession")


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.failed or _state.session is None:
        return
    config = _state.session.config
    if _is_worker(config):  # the controller names it, once
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    where = f"{report.when}, {report.duration:.1f} s"
    worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
    if isinstance(worker, str):
        where += f", {worker}"
    # On a line of its own, also in the middle of a line of progress marks.
    reporter.write(f"\nFAILED {report.nodeid} ({where})\n", red=True)
