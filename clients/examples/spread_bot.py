"""An example bot on the SDK: keep one bid and one ask around the public mid.

It shows the pieces a quant bot needs: the asyncio client (orders, replaces, the
stream of its own execution reports), a local book kept from the public feed that
resynchronises by itself, and reacting to both. Run it against a running exchange:

    EXCHANGE_USER=bot1 EXCHANGE_PASSWORD='Bot.pass1' \\
        python -m clients.examples.spread_bot AAPL --spread 0.10 --size 50 --duration 30

Each second it moves its two quotes to mid -/+ spread/2 (with replace, so it never
piles up orders), prints every fill it gets, and on exit cancels what it has left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os

import zmq

from clients import settings
from clients.aio import AsyncClient, ExchangeError
from clients.feed import BookSubscriber
from services.common.money import to_dollars, to_units
from services.common.wire import Fill, Side


async def run(symbol: str, spread: int, size: int, duration: float, create: bool) -> dict:
    cfg = settings.load()
    spec = cfg.symbols[symbol]
    user, password = os.environ["EXCHANGE_USER"], os.environ["EXCHANGE_PASSWORD"]
    # every gateway and marketdata service (EXCHANGE_GATEWAYS / EXCHANGE_MARKETDATA, or
    # the config's): the SDK moves to the next when the one in use goes silent
    book = BookSubscriber(zmq.Context.instance(), *settings.marketdata(cfg), symbol)
    stats = {"fills": 0, "replaced": 0, "placed": 0}
    async with AsyncClient(settings.gateways(cfg)) as client:
        if create:
            with contextlib.suppress(ExchangeError):  # it may exist already
                await client.signup(user, password)
        await client.login(user, password)

        async def watch_fills() -> None:
            async for report in client.reports():
                for event in report.events:
                    if type(event) is Fill:
                        stats["fills"] += 1
                        print(f"fill: {event.qty} {symbol} @ {to_dollars(event.price)}")

        watcher = asyncio.create_task(watch_fills())
        quotes: dict[int, int] = {}  # side -> our order id
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        try:
            while loop.time() < end:
                book.poll(0)  # the local book, gap-checked and resynced by the subscriber
                bid, _, ask, _ = book.best()
                mid = (bid + ask) // 2 if bid and ask else spec.reference
                for side, price in ((Side.BUY, mid - spread // 2), (Side.SELL, mid + spread // 2)):
                    price -= price % spec.tick
                    try:
                        if side in quotes:
                            await client.replace(quotes[side], price, size)
                            stats["replaced"] += 1
                        else:
                            quotes[side] = (
                                await client.place(symbol, side, size, price)
                            ).ack.order_id
                            stats["placed"] += 1
                    except ExchangeError as exc:  # e.g. the quote filled away: quote anew
                        print(f"{side.name}: {exc}")
                        quotes.pop(side, None)
                await asyncio.sleep(1.0)
        finally:
            for order_id in quotes.values():
                with contextlib.suppress(ExchangeError):
                    await client.cancel(order_id)
            watcher.cancel()
            book.close()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbol")
    parser.add_argument("--spread", default="0.10", help="dollars between bid and ask")
    parser.add_argument("--size", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--create-account", action="store_true")
    args = parser.parse_args()
    stats = asyncio.run(
        run(
            args.symbol.upper(),
            to_units(args.spread),
            args.size,
            args.duration,
            args.create_account,
        )
    )
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
