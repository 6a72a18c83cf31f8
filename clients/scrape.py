"""Reading the services' Prometheus endpoints, for `exchange status`.

Each service serves its metrics at ``http://[metrics] host:PORT/metrics`` (the ports
in ``[metrics] ports``). This reads the text format back (counters, gauges and
histograms' buckets) and picks the few figures an operator looks at first; the full
list is in docs/operations.md.
"""

from __future__ import annotations

import http.client
import math
import re
import urllib.request

LINE = re.compile(r"^(\w+)(?:\{([^}]*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# per service, the figures `exchange status` shows: (label, series name, how)
KEY_FIGURES = {
    "gateway": [
        ("requests", "exchange_requests_in_total", "sum"),
        ("rejects", "exchange_rejects_total", "sum"),
        ("in flight", "exchange_in_flight", "sum"),
        ("sessions", "exchange_sessions", "sum"),
        ("lag", "exchange_follower_lag", "sum"),
    ],
    "matcher": [
        ("sequenced", "exchange_commands_sequenced_total", "sum"),
        ("commit lag", "exchange_commit_lag", "sum"),
        ("busy", "exchange_batches_busy_total", "sum"),
    ],
    "journal": [
        ("committed", "exchange_records_committed_total", "sum"),
        ("fsync p99 ms", "exchange_fsync_seconds_bucket", "p99ms"),
        ("disk full", "exchange_disk_full", "sum"),
    ],
    "marketdata": [
        ("feed msgs", "exchange_feed_messages_total", "sum"),
        ("lag", "exchange_follower_lag", "sum"),
        ("gap reads", "exchange_follower_gap_reads_total", "sum"),
    ],
}


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for each sample line of Prometheus's text format."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if match:
            name, labels, value = match.groups()
            samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return samples


def scrape(host: str, port: int, timeout: float = 1.0) -> list | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as r:
            return parse(r.read().decode())
    except (OSError, ValueError, http.client.HTTPException):  # nothing there, or not HTTP
        return None


def p99_ms(buckets: list[tuple[float, float]]) -> float | None:
    """The bucket bound at or under which 99% of a histogram's observations fall."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for bound, count in buckets:
        if count >= 0.99 * total:
            return None if math.isinf(bound) else round(bound * 1000, 3)
    return None


def key_figures(service: str, samples: list) -> dict[str, float | None]:
    """The figures `exchange status` shows for one service (matchers share a list)."""
    wanted = KEY_FIGURES.get("matcher" if service.startswith("matcher") else service, [])
    out: dict[str, float | None] = {}
    for label, name, how in wanted:
        if how == "p99ms":
            buckets = [
                (math.inf if lb.get("le") == "+Inf" else float(lb["le"]), v)
                for n, lb, v in samples
                if n == name
            ]
            out[label] = p99_ms(buckets)
        else:
            values = [v for n, _, v in samples if n == name]
            out[label] = sum(values) if values else None
    return out
