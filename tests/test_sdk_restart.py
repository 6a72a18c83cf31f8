"""The SDK carries on through a gateway killed with SIGKILL and started again while it
places orders in a loop: it logs in again before sending more, resends what was
unanswered, and every order is entered exactly once (checked by cl_ord_id against
the journal)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

from clients.aio import AsyncClient
from clients.client import Client
from services.common.money import to_units
from services.common.wire import Accepted, Side
from services.journal import tools as journal_tools
from tests.mesh import wait_for

PASSWORD = "Secret.pw1"
AFTER = 40  # orders each loop still places once the gateway is back


def while_disrupted(loop, disrupt, acks: dict) -> None:
    """Run ``loop(done)`` on a thread while this thread, once orders are under way
    (``acks``, the loop's, has some), calls ``disrupt()`` and then sets ``done``.
    Re-raises what ``loop`` raised."""
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            loop(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: acks or failed, 60, what="orders under way")
    time.sleep(0.2)
    disrupt()
    done.set()
    thread.join(120)
    assert not thread.is_alive(), "the client loop did not finish"
    if failed:
        raise failed[0]


def restarter(mesh):
    """SIGKILL the gateway and start it again (the harness is its supervisor here;
    from the main thread, since a service started from a thread that ends is sent
    SIGTERM, see die_with_parent)."""

    def restart() -> None:
        mesh["gateway"].kill()
        time.sleep(0.3)  # the clients' connections go, and their orders wait
        mesh["gateway"].start()

    return restart


async def eight_loops(client: AsyncClient, after: threading.Event, acks: dict, seqs: list):
    """Eight loops placing resting buys on ``client``, each with an order in flight,
    until each has placed AFTER once ``after`` is set; into ``acks`` (order ids by
    cl_ord_id) and ``seqs``."""

    async def worker(w: int) -> None:
        placed = n = 0
        while placed < AFTER:
            cl = f"a{w}-{n}"
            result = await client.place("AAPL", Side.BUY, 1, price(n), cl_ord_id=cl)
            assert result.ack.cl_ord_id == cl
            acks[cl] = result.ack.order_id
            seqs.append(result.seq)
            n += 1
            placed += after.is_set()

    await asyncio.gather(*(worker(w) for w in range(8)))


def price(i: int) -> int:
    return to_units("160.00") - (i % 50) * 100  # buys that rest, on 50 price levels


def entered_once(home, account: int, acks: dict[str, int], last_seq: int) -> None:
    """Each cl_ord_id was accepted exactly once in the journal, as the order the
    client was told; no other order of the account was entered."""
    wait_for(
        lambda: journal_tools.verify(home / "journal")["last_seq"] >= last_seq,
        what="the journal to commit the orders",
    )
    accepted = Counter()
    order_of: dict[str, int] = {}
    for record in journal_tools.records(home / "journal"):
        for event in record.events:
            if isinstance(event, Accepted) and event.account == account:
                accepted[event.cl_ord_id] += 1
                order_of[event.cl_ord_id] = event.order_id
    assert set(accepted) == set(acks)
    assert all(n == 1 for n in accepted.values()), [c for c, n in accepted.items() if n > 1]
    assert order_of == acks


def test_sync_client_orders_through_a_gateway_restart(mesh, short_home):
    client = Client(mesh.cfg.endpoints["gateway"], timeout=20)
    client.signup("looper", PASSWORD)
    client.login("looper", PASSWORD)
    acks: dict[str, int] = {}
    seqs: list[int] = []
    slowest: list[float] = [0.0]

    def loop(restarted: threading.Event) -> None:
        after = 0
        while after < AFTER:
            cl = f"s{len(acks)}"
            began = time.monotonic()
            result = client.place("AAPL", Side.BUY, 1, price(len(acks)), cl_ord_id=cl)
            slowest[0] = max(slowest[0], time.monotonic() - began)
            assert result.ack.cl_ord_id == cl
            acks[cl] = result.ack.order_id
            seqs.append(result.seq)
            after += restarted.is_set()

    try:
        while_disrupted(loop, restarter(mesh), acks)
        assert client._connects >= 2  # it did lose its connection and make a new one
        assert slowest[0] > 0.3  # an order waited out the restart ...
        assert len(client.orders().orders) == len(acks)  # ... and none is missing
        entered_once(short_home, client.account, acks, max(seqs))
    finally:
        client.close()


def aio_loops(gateway, name: str, disrupt, check) -> tuple[int, dict, int]:
    """``eight_loops`` on an AsyncClient of a new account ``name`` (``gateway``: one or
    several) while ``disrupt()`` is done (``while_disrupted``); then ``check(client)``,
    and every order is open. Returns (account, order ids by cl_ord_id, last seq)."""
    acks: dict[str, int] = {}
    seqs: list[int] = []
    outcome: list = []

    async def scenario(event: threading.Event) -> None:
        async with AsyncClient(gateway, timeout=20) as client:
            await client.signup(name, PASSWORD)
            await client.login(name, PASSWORD)
            await eight_loops(client, event, acks, seqs)
            check(client)
            assert len((await client.orders()).orders) == len(acks)
            outcome.append(client.account)

    while_disrupted(lambda event: asyncio.run(scenario(event)), disrupt, acks)
    assert len(acks) >= 8 * AFTER
    return outcome[0], acks, max(seqs)


def test_asyncio_client_orders_through_a_gateway_restart(mesh, short_home):
    def reconnected(client: AsyncClient) -> None:
        assert client._connects >= 2

    account, acks, last_seq = aio_loops(
        mesh.cfg.endpoints["gateway"], "aio-looper", restarter(mesh), reconnected
    )
    entered_once(short_home, account, acks, last_seq)
