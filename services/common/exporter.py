"""A service's metrics over HTTP in Prometheus's text format, through prometheus-client.

The service keeps its series in its own ``Metrics`` registry (services/common/metrics.py:
an update on the order path is one attribute add); this module only reads them when
Prometheus scrapes, from prometheus-client's HTTP server thread, so exporting costs the
order path nothing. Every series is named ``exchange_<name>`` and labelled with the
service (``service="gateway"``, ``"matcher-a"``...). ``[metrics] ports`` says which
port each service listens on; a service with no port exports nothing.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from services.common.metrics import Metrics

PREFIX = "exchange_"


class MetricsCollector:
    """A prometheus-client collector over one ``Metrics`` registry."""

    def __init__(self, metrics: Metrics, service: str) -> None:
        self.metrics = metrics
        self.service = service

    def collect(self):
        families: dict[str, object] = {}
        for series in self.metrics.series():
            names = ["service", *(k for k, _ in series.labels)]
            values = [self.service, *(v for _, v in series.labels)]
            family = families.get(series.name)
            if family is None:
                family = families[series.name] = _family(series, names)
            value = series.read()
            if series.kind == "histogram":
                buckets = [
                    ("+Inf" if math.isinf(bound) else repr(float(bound)), count)
                    for bound, count in value["buckets"].items()
                ]
                family.add_metric(values, buckets, value["sum"])
            else:
                family.add_metric(values, value)
        yield from families.values()


def _family(series, labels: list[str]):
    name, help_text = PREFIX + series.name, series.help or series.name
    if series.kind == "counter":
        return CounterMetricFamily(name, help_text, labels=labels)
    if series.kind == "histogram":
        return HistogramMetricFamily(name, help_text, labels=labels)
    return GaugeMetricFamily(name, help_text, labels=labels)


def serve(metrics: Metrics, service: str, port: int, host: str = "127.0.0.1"):
    """Export ``metrics`` on ``host:port`` (0: not at all); returns the server or None."""
    if not port:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics, service))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
