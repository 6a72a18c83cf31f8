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


def trader(mesh: Mesh, name: str, password: str = "Secret.pw1", timeout: float = 15):
    """A client with a new account, logged in."""
    from clients.client import Client

    client = Client(mesh.cfg.endpoints["gateway"], timeout=timeout)
    client.signup(name, password)
    client.login(name, password)
    return client
