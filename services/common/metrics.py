"""Counters and histograms a service keeps about itself, in process.

Each service's node owns one ``Metrics`` registry; the service asks it for the series
it updates (``metrics.counter("orders_in", "orders received")``) once, at start, and
keeps the object, so an update on the order path is one attribute add. ``snapshot()``
gives every value at that moment, for a log line or an exporter.
"""

from __future__ import annotations

from bisect import bisect_left

Labels = tuple[tuple[str, str], ...]

# seconds: from a fast fdatasync to a stall worth looking at
DEFAULT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))


def series_name(name: str, labels: Labels) -> str:
    """``name`` or ``name{a="x",b="y"}``: a series' key in ``snapshot()``."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"


class Counter:
    __slots__ = ("name", "help", "labels", "value")
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Labels) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.value = 0

    def inc(self, n: int | float = 1) -> None:
        self.value += n

    def read(self) -> int | float:
        return self.value


class Histogram:
    """Counts of observations at or below each bucket's bound, their sum and count."""

    __slots__ = ("name", "help", "labels", "bounds", "counts", "sum", "count")
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Labels, buckets=DEFAULT_BUCKETS) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def read(self) -> dict:
        cumulative, total = {}, 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            cumulative[bound] = total
        # from the buckets too, not ``count``: a scrape from the exporter's thread in the
        # middle of ``observe`` must not show +Inf below the last bucket
        cumulative[float("inf")] = total + self.counts[-1]
        return {"count": self.count, "sum": self.sum, "buckets": cumulative}


class Gauge:
    """A value read when asked (``fn()``): queue depths, lags, states. Nothing is
    updated on the order path; the exporter's thread calls ``fn`` when scraped.
    ``counter=True`` marks a total that only grows (a counter another object keeps)."""

    __slots__ = ("name", "help", "labels", "fn", "kind")

    def __init__(self, name: str, help: str, labels: Labels, fn, counter: bool = False) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.fn = fn
        self.kind = "counter" if counter else "gauge"

    def read(self) -> int | float:
        return self.fn()


class Metrics:
    """One service's series, by name and labels; asking twice gives the same object."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._series: dict[tuple[str, Labels], Counter | Histogram] = {}

    def _get(self, cls, name: str, help: str, labels, **extra):
        key = (name, _labels(labels))
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = cls(name, help, key[1], **extra)
        elif not isinstance(found, cls):
            raise ValueError(f"{name} is a {found.kind}, not a {cls.kind}")
        return found

    def counter(self, name: str, help: str = "", labels: dict[str, str] | None = None) -> Counter:
        return self._get(Counter, name, help, labels)

    def histogram(
        self,
        name: str,
        help: str = "",
        labels: dict[str, str] | None = None,
        buckets=DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._get(Histogram, name, help, labels, buckets=buckets)

    def gauge(
        self,
        name: str,
        help: str,
        fn,
        labels: dict[str, str] | None = None,
        counter: bool = False,
    ) -> Gauge:
        """A series read from ``fn()`` when asked (it is replaced if asked again)."""
        key = (name, _labels(labels))
        found = self._series[key] = Gauge(name, help, key[1], fn, counter)
        return found

    def series(self) -> list[Counter | Histogram | Gauge]:
        """Every series (name, help, kind, labels and ``read()``), for an exporter."""
        return list(self._series.values())

    def snapshot(self) -> dict[str, int | float | dict]:
        """Every series' current value by ``series_name``: a number for a counter,
        ``{"count", "sum", "buckets": {bound: cumulative count}}`` for a histogram."""
        return {series_name(s.name, s.labels): s.read() for s in self._series.values()}
