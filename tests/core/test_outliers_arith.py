"""The outlier book's p95 and median are statistics' own, to the bit."""

from __future__ import annotations

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from spanvisor.budgets.outliers import _p95_and_median

_value = st.one_of(st.integers(0, 10**12), st.floats(0, 1e9, allow_nan=False, allow_infinity=False))


@settings(max_examples=2000, deadline=None)
@given(st.lists(_value, min_size=2, max_size=60))
def test_p95_and_median_are_statistics(values: list[float]) -> None:
    data = sorted(values)
    mine = _p95_and_median(data)
    theirs = (statistics.quantiles(data, n=20, method="inclusive")[-1], statistics.median(data))
    assert mine == theirs
    assert [type(x) for x in mine] == [type(x) for x in theirs]
