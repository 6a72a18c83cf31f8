"""The process harness the tests share (it lives with the benchmarks that use it too)."""

import contextlib
import tomllib

from clients.bench import cluster
from clients.bench.cluster import (  # noqa: F401 - re-exported for the tests
    Service,
    cli_env,
    exchange_cli,
    free_port,
    load,
    matcher_state,
    wait_for,
    write_config,
)


class Mesh(cluster.Mesh):
    """The benchmarks' mesh with 1 MiB journal segments unless a test says otherwise:
    each journal makes a zero-filled spare segment in the background, and 64 MiB of
    zeros per test is disk time the suite need not spend (and rolls get exercised)."""

    def __init__(
        self, home, standby: bool = False, fix: bool | dict = False, **sections: dict
    ) -> None:
        sections["journal"] = {"segment_bytes": 1 << 20, **sections.get("journal", {})}
        if fix:  # the FIX acceptor on a free port (``fix``: its [fix] keys), after the gateway
            sections["fix"] = {"port": free_port(), **(fix if isinstance(fix, dict) else {})}
        super().__init__(home, standby, **sections)
        if fix:
            self.services["fix"] = Service("fix", self.config_path, home)


def trader(mesh: Mesh, name: str, password: str = "Secret.pw1", timeout: float = 15):
    """A client with a new account, logged in."""
    from clients.client import Client

    client = Client(mesh.cfg.endpoints["gateway"], timeout=timeout)
    client.signup(name, password)
    client.login(name, password)
    return client


def beside(mesh: Mesh, service: str, **endpoints: str) -> Service:
    """Another ``service`` process (a second gateway or marketdata) beside the mesh's,
    started: its config is the mesh's with ``endpoints`` changed (the ones it binds, on
    other ports) and its own metrics port, the ipc endpoints are the mesh's by absolute
    path, and it has its own home (for its snapshots and log)."""
    raw = tomllib.loads(mesh.config_path.read_text())
    raw["endpoints"] = dict(mesh.cfg.endpoints.items()) | endpoints  # resolved: absolute
    raw["metrics"]["ports"][service] = free_port()
    home = mesh.home / f"{service}-2"
    return Service(service, write_config(home, **raw), home).start()


def replay_journal(mesh: Mesh) -> dict:
    """`exchange journal verify` then `exchange journal replay --json` on the mesh's
    journal, through the real command; fails unless both pass. Returns replay's JSON."""
    import json

    journal_dir = str(mesh.home / "journal")
    run = lambda *args: exchange_cli(  # noqa: E731
        "journal", *args, home=mesh.home, config_path=mesh.config_path
    )
    verify = run("verify", journal_dir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replay = run("replay", journal_dir, "--json", "--config", str(mesh.config_path))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    replayed = json.loads(replay.stdout)
    assert replayed["mismatch"] is None
    return replayed


def stop_supervised(home, config_path):
    """`exchange down` on a mesh `exchange up` started, then supervisord killed by its
    PID if it is still there after 20 s, whatever happened; the `down` it ran."""
    import os
    import signal
    import time

    down = exchange_cli("down", "--json", home=home, config_path=config_path)
    pidfile = home / "run" / "supervisord.pid"
    deadline = time.monotonic() + 20
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    return down


FAST_TIMINGS = {"heartbeat_ms": 50, "missed_beats": 4}


@contextlib.contextmanager
def running(home, standby: bool = False, fix: bool | dict = False, **sections: dict):
    """A started mesh with fast heartbeats, stopped by PID afterwards, whatever happens."""
    mesh = Mesh(home, standby, fix, timings=FAST_TIMINGS, **sections)
    try:
        mesh.start()
        yield mesh
    finally:
        mesh.stop()
