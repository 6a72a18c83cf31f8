"""A service's metrics registry, scraped over HTTP in Prometheus's text format."""

from __future__ import annotations

import urllib.request

from services.common.exporter import serve
from services.common.metrics import Metrics
from tests.mesh import free_port


def test_counters_and_histograms_are_scraped_with_the_service_label():
    metrics = Metrics("journal")
    metrics.counter("records_committed", "records made durable").inc(7)
    metrics.counter("rejects", "rejects by code", {"code": "BUSY"}).inc(2)
    fsync = metrics.histogram("fsync_seconds", "fdatasync time")
    for value in (0.0003, 0.002, 0.03):
        fsync.observe(value)
    port = free_port()
    server = serve(metrics, "journal", port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        server.shutdown()
    lines = text.decode().splitlines()
    assert 'exchange_records_committed_total{service="journal"} 7.0' in lines
    assert 'exchange_rejects_total{code="BUSY",service="journal"} 2.0' in lines
    assert 'exchange_fsync_seconds_bucket{le="0.0005",service="journal"} 1.0' in lines
    assert 'exchange_fsync_seconds_bucket{le="+Inf",service="journal"} 3.0' in lines
    assert 'exchange_fsync_seconds_count{service="journal"} 3.0' in lines


def test_no_port_no_server():
    assert serve(Metrics("gateway"), "gateway", 0) is None
