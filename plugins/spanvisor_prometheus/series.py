"""Plain-number series the task metrics keep: counters and histograms by label
values, with the latest exemplar of each (read by ``collectors.py``)."""

from __future__ import annotations

from typing import NamedTuple

# OpenMetrics caps an exemplar's label set (names and values) at 128 runes.
MAX_EXEMPLAR_TRACE_CHARS = 128 - len("trace_id")


class Exemplar(NamedTuple):
    trace_id: str
    value: float
    timestamp: float


Key = tuple[str, ...]


class CounterData:
    __slots__ = ("exemplars", "labelnames", "values")

    def __init__(self, *labelnames: str) -> None:
        self.labelnames = labelnames
        self.values: dict[Key, float] = {}
        self.exemplars: dict[Key, Exemplar] = {}

    def inc(self, key: Key, amount: float, exemplar: Exemplar | None) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount
        if exemplar is not None:
            self.exemplars[key] = exemplar


class HistogramSeries:
    __slots__ = ("count", "counts", "exemplars", "total")

    def __init__(self, n_buckets: int) -> None:
        # Per bucket (not cumulative), the last one is +Inf.
        self.counts = [0] * (n_buckets + 1)
        self.exemplars: list[Exemplar | None] = [None] * (n_buckets + 1)
        self.total = 0.0
        self.count = 0


class HistogramData:
    def __init__(self, buckets: tuple[float, ...], *labelnames: str) -> None:
        self.buckets = buckets
        self.labelnames = labelnames
        self.series: dict[Key, HistogramSeries] = {}

    def observe(self, key: Key, value: float, exemplar: Exemplar | None) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = HistogramSeries(len(self.buckets))
        i = len(self.buckets)
        for j, bound in enumerate(self.buckets):
            if value <= bound:
                i = j
                break
        s.counts[i] += 1
        if exemplar is not None:
            s.exemplars[i] = exemplar
        s.total += value
        s.count += 1


__all__ = ["MAX_EXEMPLAR_TRACE_CHARS", "CounterData", "Exemplar", "HistogramData", "HistogramSeries", "Key"]
