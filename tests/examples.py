"""How hard the property tests look: Hypothesis' settings for the whole suite.

* No deadline and no "too slow" health check: both time a test, and a loaded
  machine (CI, four pytest processes on two cores) fails them at random.
  The suite's own per-test deadline (tests/deadline.py) still catches a hang.
* ``TEST_EXAMPLES`` scales every property test's ``max_examples``
  (at least :data:`FLOOR` each). ``make test`` sets 0.3 to stay within CI's
  time; ``make test TEST_EXAMPLES=1`` (and plain ``pytest``) draws
  the counts written in the tests, and a larger factor looks harder still.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

FLOOR = 5
ENV = "TEST_EXAMPLES"

settings.register_profile("spanvisor", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("spanvisor")


def scale() -> float:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise pytest.UsageError(f"{ENV}={raw!r}: give a number, such as 0.4 or 1") from None
    if value <= 0:
        raise pytest.UsageError(f"{ENV}={raw!r}: give a number above 0")
    return value


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    factor = scale()
    done: set[int] = set()
    for item in items:
        fn = getattr(item, "obj", None)
        fn = getattr(fn, "__func__", fn)  # a test method: the function under it
        # A test under @given carries its settings here; the wrapper reads them
        # when it runs. Parametrized tests share one function: scaled once.
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if own is None or id(fn) in done:
            continue
        done.add(id(fn))
        # Over a test's own settings too: no test here may depend on timing.
        wanted = settings(own, deadline=None, suppress_health_check=[*own.suppress_health_check, HealthCheck.too_slow])
        if factor != 1.0:
            n = own.max_examples
            wanted = settings(
                wanted, max_examples=min(n, max(FLOOR, round(n * factor))) if factor < 1 else round(n * factor)
            )
        fn._hypothesis_internal_use_settings = wanted  # type: ignore[union-attr]
