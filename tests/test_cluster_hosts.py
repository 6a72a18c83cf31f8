"""Three hosts as network namespaces, each with its own supervisord, journal and etcd
member: whole hosts lose power, lose their disk and are cut off, under load, and
nothing acknowledged is lost or duplicated (docs/architecture.md, "Replicated
journal"; docs/operations.md, "Three machines").

After each blow the same checks: every acknowledged order is in the journal at the
seq it was acknowledged with, exactly once; the three journals hold the same bytes;
replaying a journal offline gives the live primary's state hash.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from clients.bench.hosts import Cluster, audit
from clients.bench.netns import unavailable

why = unavailable() or (None if shutil.which("etcd") else "etcd is not installed")
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")
# longer than a session's silence timeout (3 x client_heartbeat_ms, 6 s by default,
# looked at every second)
LONG_CUT_S = 9.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


def check(cluster: Cluster, loads: list) -> None:
    result = audit(cluster, loads)
    assert result["journals_identical"], "the journals differ"
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["replay_matches"], "replaying the journal gave another state hash"
    for out in loads:
        assert json.loads(out.read_text())["acks"], f"{out.name}: nothing acknowledged"


def max_gap(out) -> float:
    return json.loads(out.read_text())["max_gap_s"]


@pytest.mark.parametrize("which", ["primary", "standby", "third"])
def test_a_whole_host_loses_power_under_load(cluster, which):
    primary = cluster.wait_primary()
    standby = "b" if primary["host"] == "a" else "a"
    host = {"primary": primary["host"], "standby": standby, "third": "c"}[which]
    out = cluster.load(f"power{which}", seconds=12, rate=50)
    time.sleep(4)
    cluster.power_off(host)
    if which == "primary":
        cluster.wait_primary(other_than=primary["service"], via="c")
    cluster.wait_loads()
    cluster.start(host)
    check(cluster, [out])
    assert max_gap(out) < 5, "the trader waited too long"


def test_a_host_whose_disk_was_wiped_refills_from_its_peers(cluster):
    cluster.wait_primary()
    out = cluster.load("wiped", seconds=10, rate=50)
    time.sleep(3)
    cluster.power_off("c")
    shutil.rmtree(cluster.home("c"))  # journal, snapshots, etcd's data: all of it
    cluster.wait_loads()
    cluster.start("c")  # its etcd member is replaced, its journal refills from a and b
    check(cluster, [out])
    members = cluster.inside("c", "members")["members"]
    assert sorted(m.get("name") for m in members) == ["a", "b", "c"], members  # all started
    # it counted in no fence majority until it held what its peers held
    log = "".join(p.read_text() for p in (cluster.home("c") / "log").glob("journal*.log"))
    assert '"joining"' in log and '"joined"' in log and "caught-up" in log, log[-2000:]
    # and now it does: the primary's host dies, the standby and c elect a new primary
    primary = cluster.wait_primary()
    after = cluster.load("wiped-after", seconds=10, rate=50)
    time.sleep(3)
    cluster.power_off(primary["host"])
    cluster.wait_primary(other_than=primary["service"], via="c")
    cluster.wait_loads()
    cluster.start(primary["host"])
    check(cluster, [out, after])


def test_a_cut_off_primary_acknowledges_nothing_and_steps_down_after_healing(cluster):
    primary = cluster.wait_primary()
    host = primary["host"]
    # a trader on the primary's own host, through its own gateway only
    gateway = f"tcp://{cluster.hosts.address(host)}:5555"
    inside = cluster.load("inside", seconds=16, rate=50, gateways=gateway, where=host)
    outside = cluster.load("outside", seconds=16, rate=50)
    time.sleep(4)
    # the other two elect a new primary while the old one is cut off
    new, cut_at, healed_at = _cut_off(cluster, primary, 5.0)
    assert new["epoch"] > primary["epoch"]
    # ... and once it hears of the newer epoch the old primary steps down (its process
    # exits; supervisord starts a standby in its place)
    deadline = time.monotonic() + 30
    while _pid(cluster, primary["service"]) in (None, primary["pid"]):
        assert time.monotonic() < deadline, "the old primary did not step down"
        time.sleep(0.5)
    cluster.wait_loads()
    check(cluster, [inside, outside])
    # while cut off, the old primary's side acknowledged nothing: only what was
    # committed before the cut (in flight for a moment) and what came after healing
    acked = [a["acked"] for a in json.loads(inside.read_text())["acks"]]
    during = [t for t in acked if cut_at + 0.3 < t < healed_at]
    assert not during, f"{len(during)} acknowledgements while the primary was cut off"
    assert any(t > healed_at for t in acked), "the cut-off trader never got going again"


def _cut_off(cluster: Cluster, primary: dict, seconds: float) -> tuple[dict, float, float]:
    """Cut the primary's host off for ``seconds`` (at least until the other two have
    elected a new primary, which is returned), then heal it; when it was cut and when
    healed (monotonic)."""
    cluster.hosts.cut(primary["host"])
    cut_at = time.monotonic()
    new = cluster.wait_primary(timeout=30, other_than=primary["service"], via="c")
    time.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))
    cluster.hosts.heal(primary["host"])
    return new, cut_at, time.monotonic()


def _pid(cluster: Cluster, service: str) -> int | None:
    rows = cluster.status("c").get("services", [])
    return next((r["pid"] for r in rows if r["service"] == service and r["alive"]), None)


def test_a_trader_cut_off_longer_than_its_session_timeout_gets_every_answer(cluster):
    """The order a trader on the cut-off host sent just after the cut stays in flight
    until the heal; cut off for longer than its session's silence timeout (3 client
    heartbeats) and silent meanwhile (the SDK sends no pings while a call waits with
    one gateway), the trader still gets that order's one answer after healing, resent
    by its gateway to the new primary."""
    primary = cluster.wait_primary()
    host = primary["host"]
    gateway = f"tcp://{cluster.hosts.address(host)}:5555"
    inside = cluster.load("long-cut", seconds=16, rate=50, gateways=gateway, where=host)
    time.sleep(3)
    _, _, healed_at = _cut_off(cluster, primary, LONG_CUT_S)
    cluster.wait_loads()
    assert inside.exists(), "the cut-off trader got no answer to an order (it gave up)"
    check(cluster, [inside])
    acks = json.loads(inside.read_text())["acks"]
    held = [a for a in acks if a["sent"] < healed_at < a["acked"]]
    assert held, "no order was in flight across the heal"
    assert any(a["acked"] > healed_at for a in acks)
