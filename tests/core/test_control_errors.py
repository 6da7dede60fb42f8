"""How the control API tells a state-store outage (503, retry) from a bug
(500): on the real drivers' exceptions, and logged once per interval."""

from __future__ import annotations

import logging
import sqlite3

import asyncpg
import pytest

from spanvisor.receiver.control_errors import CAUSE_INTERNAL, CAUSE_STORE, ControlFailures
from spanvisor.statestores.api import StoreUnavailable, outage_of


def _chained() -> Exception:
    try:
        try:
            raise ConnectionRefusedError(111, "Connect call failed")
        except OSError as inner:
            raise RuntimeError("writing the record failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        StoreUnavailable("claim"),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.InterfaceError("pool is closing"),
        sqlite3.OperationalError("database is locked"),
        _chained(),
    ],
)
def test_an_unreachable_store_is_an_outage(exc: Exception) -> None:
    assert outage_of(exc) is not None
    status, doc, headers = ControlFailures().answer("POST", "/v1/control/tasks/T/decisions", exc)
    assert status == 503 and doc["cause"] == CAUSE_STORE and headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad"), KeyError("x"), asyncpg.exceptions.UniqueViolationError("dup"), sqlite3.IntegrityError("x")],
)
def test_anything_else_is_a_500_with_a_json_body(exc: Exception) -> None:
    assert outage_of(exc) is None
    status, doc, headers = ControlFailures().answer("GET", "/v1/control/tasks/T", exc)
    assert status == 500 and doc["cause"] == CAUSE_INTERNAL and headers == {}


def test_failures_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    # Once spanvisor's logging is configured in this process (another test's
    # CLI run), "spanvisor" does not propagate to the root: caplog listens here.
    logger = logging.getLogger("spanvisor.control")
    logger.addHandler(caplog.handler)
    propagates, logger.propagate = logger.propagate, False  # each record once, whichever way
    # A library's logging.config call in an earlier test of this process
    # (disable_existing_loggers) may have disabled it.
    disabled, logger.disabled = logger.disabled, False
    try:
        _logged_once_per_interval(caplog)
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate, logger.disabled = propagates, disabled


def _logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    failures = ControlFailures(interval_s=3600)
    with caplog.at_level(logging.INFO, logger="spanvisor.control"):
        for _ in range(100):
            failures.answer("POST", "/v1/control/tasks/T/decisions", ConnectionRefusedError(111, "refused"))
            failures.answer("GET", "/v1/control/tasks/T", ValueError("a bug"))
    records = [r for r in caplog.records if r.name == "spanvisor.control"]
    assert len(records) == 2, [r.getMessage() for r in records]
    outage, bug = sorted(records, key=lambda r: r.levelno)
    assert outage.levelno == logging.WARNING and outage.exc_info is None and not outage.exc_text
    assert "unavailable" in outage.getMessage()
    # One traceback, not 100. Once any pipeline in this process has put the
    # redacting filter on spanvisor's loggers, it travels redacted as exc_text.
    assert bug.levelno == logging.ERROR
    assert bug.exc_info is not None or "ValueError: a bug" in (bug.exc_text or "")
    failures.interval_s = 0.0
    with caplog.at_level(logging.INFO, logger="spanvisor.control"):
        failures.answer("GET", "/v1/control/tasks/T", ValueError("a bug"))
    assert "99 more since the last report" in caplog.records[-1].getMessage()
