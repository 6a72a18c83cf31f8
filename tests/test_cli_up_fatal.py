"""`exchange up` with a service that cannot start: it says which and why, stops what
it started, and fails at once instead of waiting out its timeout."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

from tests.mesh import exchange_cli, free_port, write_config


def processes_of(home: Path) -> list[int]:
    """PIDs whose environment names this EXCHANGE_HOME: supervisord and its services."""
    mark = f"EXCHANGE_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def test_up_stops_at_a_service_that_cannot_start(short_home):
    # marketdata binds its feed to an address this host does not have: it exits at
    # every start, and supervisord gives up on it (FATAL) while the rest run
    config_path = write_config(
        short_home, endpoints={"marketdata_pub": f"tcp://192.0.2.1:{free_port()}"}
    )
    try:
        started = time.monotonic()
        up = exchange_cli("up", "--json", home=short_home, config_path=config_path, timeout=90)
        took = time.monotonic() - started
        assert up.returncode == 1, up.stdout + up.stderr
        said = json.loads(up.stdout)
        assert said["ok"] is False and said["stopped"] is True
        assert list(said["failed"]) == ["marketdata"] and "marketdata" in said["error"]
        why = "\n".join(said["failed"]["marketdata"])
        assert "Cannot assign requested address" in why, why
        assert "marketdata kept exiting at start (FATAL)" in up.stderr
        assert "Cannot assign requested address" in up.stderr
        assert took < 45, f"up waited {took:.0f}s: not at once, nearer its 60 s timeout"
        # nothing half started is left: supervisord and every service are gone
        assert not (short_home / "run" / "supervisord.pid").exists()
        deadline = time.monotonic() + 10
        while processes_of(short_home) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(short_home) == []
    finally:
        for pid in processes_of(short_home):  # whatever went wrong, by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
