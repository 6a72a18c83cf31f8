"""`exchange up | down | status`: run the mesh under supervisord and look at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import zmq
from supervisor.xmlrpc import SupervisorTransport

from clients import cluster, scrape
from services.common import config, curve
from services.common.bus import Status, StatusRequest
from services.common.codec import bus_decoder, encode

ROOT = Path(__file__).resolve().parents[1]
SUPERVISORD_CONF = ROOT / "supervisord.conf"
EXPECTED = ("journal", "gateway", "marketdata")  # the heartbeat service answers itself
LOG_LINES = 5  # of a service's log shown when it failed to start
DISK_FULL = "disk-full"  # the journal's role in its beats while it cannot write


def _env(cfg_path: Path, home: Path) -> dict[str, str]:
    return dict(
        os.environ,
        EXCHANGE_HOME=str(home),
        EXCHANGE_CONFIG=str(cfg_path),
        EXCHANGE_PYTHON=sys.executable,
    )


def _config_path() -> Path:
    return Path(os.environ.get("EXCHANGE_CONFIG") or config.DEFAULT_CONFIG).resolve()


def query_status(cfg: config.Config, timeout: float = 2.0) -> Status | None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    curve.use_for_services(cfg)  # the heartbeat service may be a tcp:// link
    curve.link(sock, cfg.endpoints["heartbeat"])
    try:
        sock.send(encode(StatusRequest()))
        if not sock.poll(int(timeout * 1000)):
            return None
        return bus_decoder.decode(sock.recv())
    finally:
        sock.close(0)


def mesh_ready(status: Status | None, local: list[str] | None = None) -> bool:
    """The whole mesh is up; or, one host of a cluster (``local``: its services),
    that host's services are (a primary needs a majority of the hosts)."""
    if status is None:
        return False
    alive = {s.service: s for s in status.services if s.alive}
    if local is not None:
        return all(name in alive for name in local)
    has_primary = any(s.role == "primary" and s.epoch == status.epoch for s in alive.values())
    return has_primary and all(name in alive for name in EXPECTED)


def _supervisor(home: Path):
    """supervisord's XML-RPC interface, over its unix socket in ``home/run``."""
    transport = SupervisorTransport(None, None, f"unix://{home}/run/supervisor.sock")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def failed_services(home: Path) -> dict[str, list[str]]:
    """Services supervisord gave up on (FATAL: they kept exiting at start), each with
    the last lines of its log, which say why. Empty if supervisord does not answer."""
    try:
        infos = _supervisor(home).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return {}
    failed: dict[str, list[str]] = {}
    for info in infos:
        if info.get("statename") != "FATAL":
            continue
        lines = [info["spawnerr"]] if info.get("spawnerr") else []
        log = Path(info.get("stdout_logfile") or home / "log" / f"{info['name']}.log")
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        lines += [line for line in text.splitlines() if line.strip()][-LOG_LINES:]
        failed[info["name"]] = lines
    return failed


def _stop_supervisord(home: Path) -> bool:
    """Shut down the supervisord ``up`` started, and every service with it."""
    cluster.enter(home)
    conf = cluster.conf_path(home)
    subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "shutdown"],
        env=_env(_config_path(), home),
        capture_output=True,
        text=True,
    )
    pidfile = home / "run" / "supervisord.pid"
    deadline = time.monotonic() + 30
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pidfile.exists()


def up(
    as_json: bool = False,
    timeout: float = 60.0,
    cluster_file: str | None = None,
    host: str | None = None,
) -> int:
    home = config.exchange_home()
    for sub in ("log", "run", "journal"):
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    where = cluster.enter(home, cluster_file, host)
    cfg_path = _config_path()
    cfg = config.load(cfg_path, home=home)
    local = None
    conf = SUPERVISORD_CONF
    if where:
        if not config.is_cluster(cfg) or not cfg.cluster.host:
            raise config.ConfigError(f"{cfg_path}: --cluster needs [cluster.hosts] and --host")
        cluster.remember(home, where)
        conf = cluster.write_conf(cfg, home)
        local = cluster.local_services(cfg)
    started = False
    if (home / "run" / "supervisord.pid").exists() and query_status(cfg, 0.5):
        if not as_json:  # said once, without the start banner
            print(
                f"the exchange in {home} is already running "
                f"(order entry {cfg.endpoints['gateway']}; stop: exchange down)",
                file=sys.stderr,
            )
            return 0
        print(f"the exchange in {home} is already running", file=sys.stderr)
    else:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=_env(cfg_path, home),
            check=True,
        )
        started = True
    deadline = time.monotonic() + timeout
    print(f"starting the exchange in {home} …", file=sys.stderr, flush=True)
    while not mesh_ready(query_status(cfg, 1.0), local):
        failed = failed_services(home)
        if failed:
            return _not_up(home, as_json, started, "failed to start: " + ", ".join(failed), failed)
        if time.monotonic() > deadline:
            return _not_up(home, as_json, started, f"not up in {timeout:.0f}s", {})
        time.sleep(0.2)
    if as_json:
        print(json.dumps({"ok": True, "home": str(home), "endpoints": dict(cfg.endpoints.items())}))
        return 0
    print(
        f"exchange up (home {home})\n"
        f"  order entry:  {cfg.endpoints['gateway']}\n"
        f"  FIX 4.4:      {cfg.fix.host}:{cfg.fix.port} (TargetCompID {cfg.fix.target_comp_id}, "
        f"docs/fix.md)\n"
        f"  market data:  {cfg.endpoints['marketdata_pub']} "
        f"(snapshots {cfg.endpoints['marketdata_snapshot']})\n"
        f"  try:  EXCHANGE_PASSWORD='Secret.pw1' .venv/bin/exchange account create alice\n"
        f"        EXCHANGE_USER=alice EXCHANGE_PASSWORD='Secret.pw1' "
        f".venv/bin/exchange buy AAPL 100 170.50\n"
        f"        .venv/bin/exchange book AAPL\n"
        f"  stop: .venv/bin/exchange down"
    )
    return 0


def _not_up(
    home: Path, as_json: bool, started: bool, error: str, failed: dict[str, list[str]]
) -> int:
    """Say why the mesh is not up and, if this ``up`` started it, stop it: no half
    mesh is left behind (one that was running before is left alone)."""
    print(f"the exchange did not come up: {error}", file=sys.stderr)
    for name, lines in failed.items():
        log = home / "log" / f"{name}.log"
        print(f"  {name} kept exiting at start (FATAL); the end of {log}:", file=sys.stderr)
        for line in lines:
            print(f"    {line}", file=sys.stderr)
    stopped = False
    if started:
        print("  stopping the services it started …", file=sys.stderr, flush=True)
        stopped = _stop_supervisord(home)
        print(
            "  stopped" if stopped else f"  supervisord did not stop: see {home}/log/",
            file=sys.stderr,
        )
    if not failed:
        print(f"  see {home}/log/", file=sys.stderr)
    if as_json:
        said = {"ok": False, "home": str(home), "error": error}
        print(json.dumps({**said, "failed": failed, "stopped": stopped}))
    return 1


def down(as_json: bool = False) -> int:
    home = config.exchange_home()
    pidfile = home / "run" / "supervisord.pid"
    if not pidfile.exists():
        say = {"ok": True, "home": str(home), "was_running": False}
        print(json.dumps(say) if as_json else f"no exchange running in {home}")
        return 0
    cluster.enter(home)
    conf = cluster.conf_path(home)
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), "shutdown"],
        env=_env(_config_path(), home),
        capture_output=True,
        text=True,
    )
    deadline = time.monotonic() + 30
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = not pidfile.exists()
    if as_json:
        print(json.dumps({"ok": stopped, "home": str(home), "was_running": True}))
    else:
        print(result.stdout.strip() or f"exchange in {home} stopped")
    return 0 if stopped else 1


def _figure(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value):,}"


def status(as_json: bool) -> int:
    cluster.enter(config.exchange_home())
    cfg = config.load(_config_path(), home=config.exchange_home())
    from clients.trading import not_running

    down = not_running(cfg.endpoints["heartbeat"], cfg.home)
    st = None if down else query_status(cfg)
    if st is None:
        why = down or "the heartbeat service does not answer"
        print(json.dumps({"running": False, "error": why}) if as_json else why)
        return 3
    rows = [
        {
            "service": s.service,
            "host": s.host,
            "role": s.role,
            "pid": s.pid,
            "epoch": s.epoch,
            "seq": s.seq,
            "committed": s.committed,
            "lag": abs(s.committed - s.seq),
            "age_ms": s.age_ms,
            "alive": s.alive,
        }
        for s in st.services
    ]
    # the journal says "disk-full" as its role while it cannot write (a full disk or a
    # failing one): nothing new is stored and the matcher refuses new orders meanwhile
    disk_full = any(r["role"] == DISK_FULL and r["alive"] for r in rows)
    for r in rows:  # the key figures from each service's metrics endpoint, if it has one
        port = cfg.metrics.ports.get(r["service"])
        samples = scrape.scrape(cfg.metrics.host, port) if port and r["alive"] else None
        r["metrics"] = scrape.key_figures(r["service"], samples) if samples else {}
    if as_json:
        print(
            json.dumps(
                {"running": True, "epoch": st.epoch, "disk_full": disk_full, "services": rows}
            )
        )
        return 0
    print(f"epoch {st.epoch}")
    print(
        f"{'service':<13} {'host':<6} {'role':<10} {'pid':>7} {'epoch':>5} {'seq':>9} "
        f"{'committed':>9} {'lag':>6} {'beat':>7}"
    )
    for r in rows:
        beat = f"{r['age_ms']}ms" if r["alive"] else "DEAD"
        print(
            f"{r['service']:<13} {r['host'] or '-':<6} {r['role']:<10} {r['pid']:>7} "
            f"{r['epoch']:>5} {r['seq']:>9} {r['committed']:>9} {r['lag']:>6} {beat:>7}"
        )
    shown = [r for r in rows if r["metrics"]]
    if shown:
        print("\nkey metrics (all of them: docs/operations.md)")
        for r in shown:
            figures = ", ".join(
                f"{k} {_figure(v)}" for k, v in r["metrics"].items() if v is not None
            )
            print(f"{r['service']:<12} {figures}")
    if disk_full:
        journal = config.exchange_home() / "journal"
        print(
            f"\nJOURNAL DISK FULL: the journal cannot write to {journal}, so no new order is "
            f"taken (traders get JOURNAL_FULL).\nFree space there: it resumes by itself, "
            f"and nothing acknowledged is lost."
        )
    return 0
