"""Who is told what of a committed record: pure, so it is tested without sockets.

Each account hears the events that name it. Exchanges are anonymous: a fill tells
each side its own order and the trade, never the other side's account, order or
open size (those fields are 0 in its copy; a self-trade keeps both, both being its
own). Events that name no account (a halt, a reference price, a volatility pause)
go to whoever sent the command (the operator, or the trader whose order started a
pause) and to nobody when no one did (``reopen``, and the scheduler's session moves
and ends of day, which the matcher sequences itself): the public learns of them from
market data. An auction's indicative, its result and a day's end are market data
only: a trader whose order changed the indicative is not told it in its report (an
operator who moved a session sees everything the action did, as for any action).
"""

from __future__ import annotations

from services.common.bus import Admin, Record
from services.common.wire import AuctionDone, DayEnded, Fill, Indicative, SessionChanged

PUBLIC_ONLY = (Indicative, AuctionDone, SessionChanged, DayEnded)


def fill_for(fill: Fill, account: int) -> Fill:
    """``fill`` as ``account`` is told it: the counterparty's fields are 0."""
    if fill.taker_account == fill.maker_account:
        return fill
    if account == fill.taker_account:
        return Fill(
            fill.trade_id,
            fill.symbol,
            fill.side,
            fill.price,
            fill.qty,
            fill.taker_account,
            fill.taker_order,
            fill.taker_leaves,
            0,
            0,
            0,
            fill.auction,
        )
    return Fill(
        fill.trade_id,
        fill.symbol,
        fill.side,
        fill.price,
        fill.qty,
        0,
        0,
        0,
        fill.maker_account,
        fill.maker_order,
        fill.maker_leaves,
        fill.auction,
    )


def route(record: Record) -> dict[int, list]:
    """Account id -> the events of ``record`` it is told, in record order."""
    cmd = record.command
    sender = getattr(cmd, "account", None)  # None: no one sent it (reopen, sign-up)
    by_account: dict[int, list] = {}
    for event in record.events:
        if type(event) is Fill:
            taker, maker = event.taker_account, event.maker_account
            by_account.setdefault(taker, []).append(fill_for(event, taker))
            if maker != taker:
                by_account.setdefault(maker, []).append(fill_for(event, maker))
            continue
        if type(event) in PUBLIC_ONLY:
            continue
        account = getattr(event, "account", sender)
        if account is not None:
            by_account.setdefault(account, []).append(event)
    if type(cmd) is Admin:  # the operator sees everything the action did
        by_account[cmd.account] = list(record.events)
    return by_account
