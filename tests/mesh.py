"""The process harness the tests share (it lives with the benchmarks that use it too)."""

from clients.bench.cluster import (  # noqa: F401 - re-exported for the tests
    Mesh,
    Service,
    exchange_cli,
    free_port,
    load,
    matcher_state,
    wait_for,
    write_config,
)
