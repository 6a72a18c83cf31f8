"""`exchange up | down | status`: run the mesh under supervisord and look at it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import zmq

from services.common import config, curve
from services.common.codec import bus_decoder, encode
from services.common.protocol import Status, StatusRequest

ROOT = Path(__file__).resolve().parents[1]
SUPERVISORD_CONF = ROOT / "supervisord.conf"
EXPECTED = ("journal", "gateway", "marketdata")  # the heartbeat service answers itself


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


def mesh_ready(status: Status | None) -> bool:
    if status is None:
        return False
    alive = {s.service: s for s in status.services if s.alive}
    has_primary = any(s.role == "primary" and s.epoch == status.epoch for s in alive.values())
    return has_primary and all(name in alive for name in EXPECTED)


def up(as_json: bool = False, timeout: float = 60.0) -> int:
    home = config.exchange_home()
    cfg_path = _config_path()
    cfg = config.load(cfg_path, home=home)
    for sub in ("log", "run", "journal"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    if (home / "run" / "supervisord.pid").exists() and query_status(cfg, 0.5):
        print(f"the exchange in {home} is already running", file=sys.stderr)
    else:
        subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(SUPERVISORD_CONF)],
            env=_env(cfg_path, home),
            check=True,
        )
    deadline = time.monotonic() + timeout
    print(f"starting the exchange in {home} …", file=sys.stderr, flush=True)
    while not mesh_ready(query_status(cfg, 1.0)):
        if time.monotonic() > deadline:
            print(
                f"the exchange did not come up in {timeout:.0f}s; see {home}/log/", file=sys.stderr
            )
            if as_json:
                print(json.dumps({"ok": False, "home": str(home), "error": "not up in time"}))
            return 1
        time.sleep(0.2)
    if as_json:
        print(json.dumps({"ok": True, "home": str(home), "endpoints": cfg.endpoints}))
        return 0
    print(
        f"exchange up (home {home})\n"
        f"  order entry:  {cfg.endpoints['gateway']}\n"
        f"  market data:  {cfg.endpoints['marketdata_pub']} "
        f"(snapshots {cfg.endpoints['marketdata_snapshot']})\n"
        f"  try:  EXCHANGE_PASSWORD='Secret.pw1' .venv/bin/exchange account create alice\n"
        f"        EXCHANGE_USER=alice EXCHANGE_PASSWORD='Secret.pw1' "
        f".venv/bin/exchange buy AAPL 100 170.50\n"
        f"        .venv/bin/exchange book AAPL\n"
        f"  stop: .venv/bin/exchange down"
    )
    return 0


def down(as_json: bool = False) -> int:
    home = config.exchange_home()
    pidfile = home / "run" / "supervisord.pid"
    if not pidfile.exists():
        say = {"ok": True, "home": str(home), "was_running": False}
        print(json.dumps(say) if as_json else f"no exchange running in {home}")
        return 0
    result = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(SUPERVISORD_CONF), "shutdown"],
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


def status(as_json: bool) -> int:
    cfg = config.load(_config_path(), home=config.exchange_home())
    st = query_status(cfg)
    if st is None:
        print(
            json.dumps({"running": False}) if as_json else "the heartbeat service does not answer"
        )
        return 3
    rows = [
        {
            "service": s.service,
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
    if as_json:
        print(json.dumps({"running": True, "epoch": st.epoch, "services": rows}))
        return 0
    print(f"epoch {st.epoch}")
    print(
        f"{'service':<12} {'role':<9} {'pid':>7} {'epoch':>5} {'seq':>9} {'committed':>9} "
        f"{'lag':>6} {'beat':>7}"
    )
    for r in rows:
        beat = f"{r['age_ms']}ms" if r["alive"] else "DEAD"
        print(
            f"{r['service']:<12} {r['role']:<9} {r['pid']:>7} {r['epoch']:>5} {r['seq']:>9} "
            f"{r['committed']:>9} {r['lag']:>6} {beat:>7}"
        )
    return 0
