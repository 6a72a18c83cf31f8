"""The FIX 4.4 service against an independent FIX engine (QuickFIX) on the real mesh:
log on, trade against native SDK orders, cancel, replace, a drop copy, a SIGKILL of
the FIX service (reconnect, ResendRequest, gap fill, nothing executed twice), a
matcher failover, and execution reports that agree with `exchange fills --json`."""

from __future__ import annotations

import json
import time

import pytest

from services.common.money import to_units
from services.common.wire import Side
from tests.fixclient import FixClient
from tests.mesh import exchange_cli, running, trader, wait_for

PASSWORD = "Secret.pw1"


@pytest.fixture(scope="module")
def fix_mesh(tmp_path_factory):
    import shutil
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix="exf-", dir="/tmp"))
    try:
        with running(home, standby=True, fix=True) as mesh:
            wait_for(lambda: '"ready"' in mesh["fix"].log(), 20, what="the FIX service")
            mesh.clients = tmp_path_factory.mktemp("quickfix")
            yield mesh
    finally:
        shutil.rmtree(home, ignore_errors=True)


def quickfix(mesh, sender: str, name: str, **options) -> FixClient:
    return FixClient(mesh.clients / sender, mesh.cfg.fix.port, sender, name, **options)


def cli_fills(mesh, name: str) -> list[dict]:
    run = exchange_cli(
        "fills", "--json", home=mesh.home, config_path=mesh.config_path,
        env={"EXCHANGE_USER": name, "EXCHANGE_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)["fills"]


def restart_fix(mesh) -> None:
    mesh["fix"].kill()
    mesh["fix"].start()


def test_trade_cancel_replace_and_drop_copy_agree_with_fills(fix_mesh):
    mesh = fix_mesh
    bob = trader(mesh, "bob")
    alice = trader(mesh, "alice")
    client = quickfix(mesh, "ALICE1", "alice").start()
    drop = quickfix(mesh, "ALICEDC", "alice", drop_copy=True).start()
    try:
        bob.place("AAPL", Side.SELL, 100, to_units("170.00"))
        client.new_order("a1", "1", 60, "170.00")
        new = client.next(t11="a1", t150="0")
        assert new["39"] == "0"
        trade = client.next(t11="a1", t150="F")
        assert (trade["32"], trade["31"], trade["39"], trade["14"], trade["151"]) == (
            "60",
            "170.00",
            "2",
            "60",
            "0",
        )
        assert trade["6"] == "170.00" and trade["37"] == new["37"]

        client.new_order("a2", "1", 50, "169.00")
        rested = client.next(t11="a2", t150="0")
        client.replace("a3", "a2", "1", 80, "169.50")
        replaced = client.next(t11="a3", t150="5")
        assert (replaced["41"], replaced["38"], replaced["44"], replaced["37"]) == (
            "a2",
            "80",
            "169.50",
            rested["37"],
        )
        bob.place("AAPL", Side.SELL, 30, to_units("169.50"))  # trades with the replaced order
        partial = client.next(t11="a3", t150="F")
        assert (partial["39"], partial["14"], partial["151"]) == ("1", "30", "50")
        client.cancel("a4", "a3", "1")
        cancelled = client.next(t11="a4", t150="4")
        assert (cancelled["41"], cancelled["39"], cancelled["14"]) == ("a3", "4", "30")

        client.cancel("a5", "nosuch", "1")  # an order that does not exist
        refused = client.next(t11="a5")
        assert refused["35"] == "9" and refused["102"] == "1" and refused["434"] == "1"
        client.new_order("a6", "1", 10, "999.00")  # outside the price band
        rejected = client.next(t11="a6", t150="8")
        assert rejected["39"] == "8" and "PRICE_BAND" in rejected["58"]

        client.send("H", [(11, "a1"), (55, "AAPL"), (54, "1")])  # OrderStatusRequest
        status = client.next(t11="a1", t150="I")
        assert (status["39"], status["14"], status["37"]) == ("2", "60", new["37"])
        bob.place("AAPL", Side.SELL, 10, to_units("170.00"))  # 40 + 10 left at 170.00
        client.new_order("a7", "1", 5, "170.00", t18="6")  # post-only that would trade
        assert "POST_ONLY_WOULD_TRADE" in client.next(t11="a7", t150="8")["58"]
        client.new_order("a8", "1", 60, "170.00", t59="4")  # fill-or-kill: only 50 there
        client.next(t11="a8", t150="0")
        assert client.next(t11="a8", t150="4")["14"] == "0"
        client.new_order("a9", "1", 70, None)  # market: takes the 50, the rest cancelled
        market_trades = []
        while (report := client.next(t11="a9"))["150"] != "4":
            if report["150"] == "F":
                market_trades.append(report)
        assert sum(int(m["32"]) for m in market_trades) == 50
        assert (report["14"], report["151"], report["40"]) == ("50", "0", "1")
        client.new_order("a10", "2", 5, "171.00", t59="3")  # IOC with nothing to meet
        assert client.next(t11="a10", t150="4")["39"] == "4"

        # an order of the same account from the native gateway: the drop copy sees it,
        # the FIX order-entry session does not
        native = alice.place("AAPL", Side.BUY, 5, to_units("168.00"), cl_ord_id="native-1")
        copied = []
        while not copied or copied[-1].get("11") != "native-1":
            copied.append(drop.next())
        assert copied[-1]["37"] == str(native.ack.order_id) and copied[-1]["150"] == "0"
        seen = {(m["11"], m.get("150", m["35"])) for m in copied}
        assert {
            ("a1", "0"),
            ("a1", "F"),
            ("a3", "5"),
            ("a4", "4"),
            ("a5", "9"),
            ("a6", "8"),
        } <= seen
        assert all(m.get("11") != "native-1" for m in client.drain())

        trades = [trade, partial, *market_trades]
        fills = [f for f in cli_fills(mesh, "alice") if f["side"] == "BUY"]
        assert sorted(  # JSON money is exact decimal strings; FIX's prices as sent
            (f["order_id"], f["qty"], to_units(f["price"]), f["trade_id"]) for f in fills
        ) == sorted((int(m["37"]), int(m["32"]), to_units(m["31"]), int(m["880"])) for m in trades)
    finally:
        client.stop()
        drop.stop()
        bob.close()
        alice.close()


def test_sigkill_of_the_fix_service_resend_and_gap_fill_never_twice(fix_mesh):
    mesh = fix_mesh
    seller = trader(mesh, "sam")
    client = quickfix(mesh, "CAROL1", "carol-fix", password=PASSWORD)
    trader(mesh, "carol-fix").close()
    client.start()
    try:
        seller.place("TSLA", Side.SELL, 1000, to_units("160.00"))
        client.new_order("c1", "1", 10, "160.00", symbol="TSLA")
        client.next(t11="c1", t150="F")

        # 1. killed while the client sends: the order goes out after the kill, QuickFIX
        # stores it; on logon we ask for the gap and QuickFIX resends it (PossDupFlag)
        mesh["fix"].kill()
        wait_for(lambda: not client.app.logged_on.is_set(), 10, what="QuickFIX to see the drop")
        client.new_order("c2", "1", 10, "160.00", symbol="TSLA")
        mesh["fix"].start()
        client.wait_logged_on(30)
        trade = client.next(20, t11="c2", t150="F")
        assert trade["32"] == "10"

        # 2. the same ClOrdID again after a SIGKILL right behind it (an application's
        # resend): answered with the order's status, never executed twice
        client.new_order("c3", "1", 10, "160.00", symbol="TSLA")
        restart_fix(mesh)
        client.wait_logged_on(30)
        client.new_order("c3", "1", 10, "160.00", symbol="TSLA")
        answers = [client.next(20, t11="c3")]
        answers += [m for m in client.drain(1.5) if m.get("11") == "c3"]
        assert any(m["150"] == "I" for m in answers) or any(m["150"] == "F" for m in answers)

        # 3. fills while the FIX service is down are reported after it comes back
        client.new_order("c4", "1", 10, "159.00", symbol="TSLA")
        client.next(t11="c4", t150="0")
        mesh["fix"].kill()
        seller.place("TSLA", Side.SELL, 10, to_units("159.00"))
        mesh["fix"].start()
        client.wait_logged_on(30)
        late = client.next(20, t11="c4", t150="F")
        assert late["39"] == "2"

        fills = [f for f in cli_fills(mesh, "carol-fix") if f["symbol"] == "TSLA"]
        assert sum(f["qty"] for f in fills) == 40  # c1, c2, c3 once each, c4
        positions = exchange_cli(
            "positions", "--json", home=mesh.home, config_path=mesh.config_path,
            env={"EXCHANGE_USER": "carol-fix", "EXCHANGE_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert json.loads(positions.stdout)["TSLA"] == 40
    finally:
        client.stop()
        seller.close()


def test_sequence_numbers_survive_a_client_restart_and_reset_on_logon(fix_mesh):
    mesh = fix_mesh
    trader(mesh, "dora").close()
    client = quickfix(mesh, "DORA1", "dora").start()
    client.new_order("d1", "1", 1, "160.00")
    client.next(t11="d1", t150="0")
    out_before = client.next_seq_out()
    client.stop()
    again = quickfix(mesh, "DORA1", "dora").start()  # the same store: carries on
    assert again.next_seq_out() > out_before
    again.new_order("d2", "1", 1, "160.00")
    again.next(t11="d2", t150="0")
    again.stop()
    reset = quickfix(mesh, "DORA1", "dora", reset=True).start()  # ResetSeqNumFlag=Y
    assert reset.next_seq_out() <= 3
    reset.new_order("d3", "1", 1, "160.00")
    reset.next(t11="d3", t150="0")
    reset.stop()


def test_matcher_failover_under_fix_orders(fix_mesh):
    mesh = fix_mesh
    maker = trader(mesh, "mike")
    trader(mesh, "fay").close()
    client = quickfix(mesh, "FAY1", "fay").start()
    try:
        maker.place("MSFT", Side.SELL, 10_000, to_units("420.00"))
        for name in ("matcher-a", "matcher-b"):  # a loaded host may have failed over already
            if not mesh[name].alive():
                mesh[name].start()
        wait_for(
            lambda: any(
                s.role == "standby" and s.alive and s.seq >= 1 for s in mesh.status().services
            ),
            timeout=30,
            what="the standby to follow",
        )
        for i in range(40):
            client.new_order(f"f{i}", "1", 5, "420.00", symbol="MSFT")
            if i == 20:
                services = mesh.status().services
                (primary,) = [s.service for s in services if s.role == "primary" and s.alive]
                mesh[primary].kill()
            time.sleep(0.01)
        trades = {}
        deadline = time.monotonic() + 30
        while len(trades) < 40 and time.monotonic() < deadline:
            msg = client.next(max(0.1, deadline - time.monotonic()), t150="F")
            trades[msg["11"]] = msg
        assert sorted(trades) == sorted(f"f{i}" for i in range(40))
        fills = [f for f in cli_fills(mesh, "fay") if f["symbol"] == "MSFT"]
        assert sum(f["qty"] for f in fills) == 200  # each order once
        assert {int(m["880"]) for m in trades.values()} == {f["trade_id"] for f in fills}
        mesh[primary].start()  # back as the standby for the tests after this one
    finally:
        client.stop()
        maker.close()


def test_gateway_restart_leaves_the_fix_session_up(fix_mesh):
    """The FIX service logs its gateway session in again and resends what was
    unanswered; the FIX counterparty sees nothing but its answers."""
    mesh = fix_mesh
    trader(mesh, "gina").close()
    client = quickfix(mesh, "GINA1", "gina").start()
    try:
        client.new_order("g1", "1", 1, "160.00")
        client.next(t11="g1", t150="0")
        mesh["gateway"].kill()
        mesh["gateway"].start()
        mesh.wait_ready()
        client.new_order("g2", "1", 1, "160.00")
        assert client.next(20, t11="g2", t150="0")["39"] == "0"
        assert client.app.logons == 1 and client.app.logged_on.is_set()
    finally:
        client.stop()
