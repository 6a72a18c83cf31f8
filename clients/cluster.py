"""One host's share of a cluster: what `exchange up --cluster FILE --host NAME` runs.

The programs are supervisord.conf's own (each defined once, there); a host's
supervisord gets a copy holding only the programs its `[cluster.hosts.NAME]
services` name, plus its etcd member. The file and the host are remembered in
``$EXCHANGE_HOME/run/cluster.json`` so `down` and `status` on that host need no flags.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import shutil
from pathlib import Path

from services.common import config

ROOT = Path(__file__).resolve().parents[1]
SUPERVISORD_CONF = ROOT / "supervisord.conf"
CLUSTER_FILE = "cluster.json"
GENERATED_CONF = "supervisord.conf"


def remembered(home: Path) -> dict | None:
    """The cluster file and host `up --cluster` started in ``home``, if any."""
    try:
        return json.loads((home / "run" / CLUSTER_FILE).read_text())
    except (OSError, ValueError):
        return None


def enter(home: Path, file: str | None = None, host: str | None = None) -> dict | None:
    """Point this process's configuration at the cluster file and host (given, or
    remembered in ``home``): $EXCHANGE_CONFIG and $EXCHANGE_HOST."""
    where = {"config": str(Path(file).resolve()), "host": host} if file else remembered(home)
    if where:
        os.environ["EXCHANGE_CONFIG"] = where["config"]
        os.environ["EXCHANGE_HOST"] = where["host"]
    return where


def remember(home: Path, where: dict) -> None:
    (home / "run" / CLUSTER_FILE).write_text(json.dumps(where))


def conf_path(home: Path) -> Path:
    """The supervisord configuration of the exchange in ``home``."""
    generated = home / "run" / GENERATED_CONF
    return generated if remembered(home) and generated.exists() else SUPERVISORD_CONF


def local_services(cfg: config.Config) -> list[str]:
    """This host's services as they name themselves in status (etcd does not beat;
    the heartbeat service answers for itself)."""
    spec = cfg.cluster.hosts[cfg.cluster.host]
    return [
        s if s.startswith("matcher") else config.service_name(cfg, s)
        for s in spec.services
        if s not in ("etcd", "heartbeat")
    ]


def rejoin(cfg: config.Config, home: Path) -> bool:
    """True when this host's etcd member must join the running cluster as a new
    member: its data is gone (a wiped or replaced disk) but the others remember it.
    Then, as etcd's runbook says, the old member is removed and a new one added
    (through a live member) before it starts with ``--initial-cluster-state
    existing``. A first start (nobody reachable, or the member never started) is an
    ordinary bootstrap."""
    from services.heartbeat.etcd import Etcd, EtcdUnavailable

    cluster = cfg.cluster
    if (home / "etcd" / "data" / "member").exists():
        return False
    peer = f"http://{cluster.hosts[cluster.host].address}:{cluster.ports.etcd_peer}"
    others = [
        f"http://{cluster.hosts[h].address}:{cluster.ports.etcd_client}"
        for h in config.placed(cluster, "etcd")
        if h != cluster.host
    ]
    etcd = Etcd(others, timeout_s=2.0)
    try:
        members = etcd.members()
    except EtcdUnavailable:
        return False  # nobody to ask: the cluster's first start
    mine = [m for m in members if peer in m.get("peerURLs", [])]
    if mine and not mine[0].get("name"):
        return False  # listed but never started (a late first start): it bootstraps
    if mine:  # it ran before and lost its data: replace it
        etcd.remove_member(mine[0]["ID"])
    etcd.add_member(peer)
    return True


def etcd_command(cfg: config.Config, home: Path) -> str:
    """This host's etcd member: one of every heartbeat host's, tuned to elect a new
    leader within ``[cluster] etcd_election_ms`` (the default of 1 s would make a
    whole-host failover wait for it)."""
    cluster = cfg.cluster
    ports = cluster.ports
    spec = cluster.hosts[cluster.host]
    bind = spec.bind or spec.address
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    members = ",".join(
        f"{h}=http://{cluster.hosts[h].address}:{ports.etcd_peer}"
        for h in config.placed(cluster, "etcd")
    )
    state = "existing" if rejoin(cfg, home) else "new"
    return " ".join(
        [
            binary,
            f"--name {cluster.host}",
            f"--data-dir {home / 'etcd' / 'data'}",
            f"--listen-client-urls http://{bind}:{ports.etcd_client}",
            f"--advertise-client-urls http://{spec.address}:{ports.etcd_client}",
            f"--listen-peer-urls http://{bind}:{ports.etcd_peer}",
            f"--initial-advertise-peer-urls http://{spec.address}:{ports.etcd_peer}",
            f"--initial-cluster {members}",
            "--initial-cluster-token exchange",
            f"--initial-cluster-state {state}",
            f"--heartbeat-interval {cluster.etcd_heartbeat_ms}",
            f"--election-timeout {cluster.etcd_election_ms}",
            "--logger zap --log-level warn",
        ]
    )


def write_conf(cfg: config.Config, home: Path) -> Path:
    """supervisord.conf with only this host's programs, and its etcd member."""
    parser = configparser.RawConfigParser()
    parser.optionxform = str  # keys as written
    parser.read(SUPERVISORD_CONF)
    wanted = set(cfg.cluster.hosts[cfg.cluster.host].services)
    for section in parser.sections():
        if section.startswith("program:") and section.split(":", 1)[1] not in wanted:
            parser.remove_section(section)
    # the config's own directory, not the repository's: %(here)s would be run/
    parser.set("supervisord", "directory", str(ROOT))
    if "etcd" in wanted:
        (home / "etcd").mkdir(mode=0o700, parents=True, exist_ok=True)
        parser.add_section("program:etcd")
        for key, value in {
            "command": etcd_command(cfg, home),
            "priority": "5",
            "startsecs": "1",
            "autorestart": "true",
            "stopsignal": "TERM",
            "stopwaitsecs": "10",
            "stdout_logfile": "%(ENV_EXCHANGE_HOME)s/log/etcd.log",
            "redirect_stderr": "true",
        }.items():
            parser.set("program:etcd", key, value)
    out = io.StringIO()
    out.write(f"; generated by `exchange up --cluster` for host {cfg.cluster.host}\n")
    parser.write(out)
    path = home / "run" / GENERATED_CONF
    path.write_text(out.getvalue())
    return path
