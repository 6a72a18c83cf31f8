"""Property tests of the pure matching engine over random command streams.

Every command goes through ``Harness.apply``, which snapshots the engine, applies the
command and then checks:

* the engine's structural invariants (``check_invariants``): books never crossed at rest,
  level aggregates equal their live orders, ``engine.orders`` is exactly the resting
  orders, open-order bookkeeping, position limits, positions and cash sum to zero;
* the explicit event properties the exchange promises (fills at the maker's price,
  price-time priority, FOK all-or-nothing, IOC/market never rest, no self-trades,
  rejects and duplicates change nothing);
* a one-step reference model: the exact events (and the exact book and ledger changes)
  the command should have produced, worked out from the snapshot taken before it.

At the end the stream is replayed into a fresh engine, which must give byte-identical
events and the same state hash after every command.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, replace

import msgspec
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from services.common.bus import CancelOrder, CreateAccount, NewOrder, ReplaceOrder
from services.common.config import RiskLimits
from services.common.wire import (
    Accepted,
    AccountCreated,
    Cancelled,
    CancelReason,
    Duplicate,
    Executed,
    Fill,
    OrdType,
    Reject,
    Rejected,
    Replaced,
    Rested,
    Side,
    Stp,
    Tif,
)
from services.matcher.engine import Engine
from tests.engine_state import core_state

BUY, SELL = Side.BUY, Side.SELL
SYMBOLS = ("AAPL", "TSLA", "PENNY")  # PENNY: tick 0.0001, lot 100, 20% band
UNKNOWN_SYMBOL = "NOPE"
NAME_OK = re.compile(r"[A-Za-z0-9_.\-]{1,32}")

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    # ``cfg`` is a frozen, read-only config: sharing it across examples is safe.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------


def snapshot_books(engine: Engine) -> dict[tuple[str, int], list[tuple[int, int, int, int]]]:
    """Per (symbol, side): the live orders as (order_id, account, price, leaves), in
    priority order (best price first, then time)."""
    return {
        (sym, side): [
            (o.order_id, o.account, o.price, o.leaves) for o in book.side(side).live_orders()
        ]
        for sym, book in engine.books.items()
        for side in (BUY, SELL)
    }


def snapshot_ledger(engine: Engine) -> dict[int, tuple[int, dict[str, int]]]:
    return {
        a.account: (a.cash, {s: h.position for s, h in a.holdings.items() if h.position})
        for a in engine.accounts.values()
    }


@dataclass
class Before:
    hash: str
    core: bytes
    books: dict
    ledger: dict
    orders: dict  # order_id -> (account, symbol, side, price, leaves, stp)
    bands: dict  # symbol -> (band_lo, band_hi)
    risk: dict  # (account, symbol) -> (position, open buy, open sell)
    open_orders: dict  # account -> open orders


def take_snapshot(engine: Engine) -> Before:
    return Before(
        hash=engine.state_hash(),
        core=core_state(engine),
        books=snapshot_books(engine),
        ledger=snapshot_ledger(engine),
        orders={
            oid: (o.account, o.symbol, o.side, o.price, o.leaves, o.stp)
            for oid, o in engine.orders.items()
        },
        bands={sym: (b.band_lo, b.band_hi) for sym, b in engine.books.items()},
        risk={
            (a.account, sym): (h.position, h.open[BUY], h.open[SELL])
            for a in engine.accounts.values()
            for sym, h in a.holdings.items()
        },
        open_orders={a.account: a.open_orders for a in engine.accounts.values()},
    )


# ---------------------------------------------------------------------------
# Structural invariants, checked after every command
# ---------------------------------------------------------------------------


def check_invariants(engine: Engine, risk: RiskLimits) -> None:
    live = {}
    open_count: dict[int, int] = defaultdict(int)
    open_size: dict[tuple[int, str, int], int] = defaultdict(int)
    for sym, book in engine.books.items():
        lot = book.spec.lot
        for side in (BUY, SELL):
            bs = book.side(side)
            orders = list(bs.live_orders())
            levels: list[list[int]] = []  # [price, size, count] from the live orders
            for o in orders:
                assert (o.symbol, o.side) == (sym, side)
                assert o.live and o.leaves > 0 and o.leaves % lot == 0, o
                assert o.order_id not in live, f"order {o.order_id} rests twice"
                live[o.order_id] = o
                open_count[o.account] += 1
                open_size[o.account, sym, side] += o.leaves
                if levels and levels[-1][0] == o.price:
                    levels[-1][1] += o.leaves
                    levels[-1][2] += 1
                else:
                    levels.append([o.price, o.leaves, 1])
            prices = [p for p, _, _ in levels]
            # best price first, each price once
            assert prices == sorted(set(prices), reverse=side == BUY)
            assert bs.depth() == [(p, q) for p, q, _ in levels], (sym, side)
            assert bs.best_key == (bs.sign * prices[0] if prices else None), (sym, side)
            assert {k: (lv.price, lv.qty, lv.count) for k, lv in bs.levels.items()} == {
                bs.sign * p: (p, q, n) for p, q, n in levels
            }, (sym, side)
        # never crossed at rest
        if book.bids.best_key is not None and book.asks.best_key is not None:
            assert -book.bids.best_key < book.asks.best_key, f"{sym} crossed at rest"
    # engine.orders holds exactly the live resting orders (the same objects)
    assert engine.orders.keys() == live.keys()
    assert all(engine.orders[oid] is o for oid, o in live.items())
    # per-account bookkeeping and risk limits
    limit = risk.max_position
    for acct in engine.accounts.values():
        assert acct.open_orders == open_count[acct.account]
        assert acct.open_orders <= risk.max_open_orders
        for sym, h in acct.holdings.items():
            assert h.open[BUY] == open_size[acct.account, sym, BUY]
            assert h.open[SELL] == open_size[acct.account, sym, SELL]
            assert h.position + h.open[BUY] <= limit, (acct.account, sym)
            assert h.position - h.open[SELL] >= -limit, (acct.account, sym)
    # zero-sum ledger
    for sym in engine.books:
        assert sum(engine.position(a, sym) for a in engine.accounts) == 0, sym
    # trades move cash between accounts; only opening balances bring it in
    assert sum(a.cash for a in engine.accounts.values()) == risk.opening_cash * len(engine.accounts)


# ---------------------------------------------------------------------------
# The explicit event properties
# ---------------------------------------------------------------------------


def touched_makers(events: list) -> list[int]:
    """Maker orders an incoming order reached: filled, or cancelled by self-trade
    prevention (resting side, so ``from_book``), in event order."""
    out = []
    for e in events:
        if isinstance(e, Fill):
            out.append(e.maker_order)
        elif isinstance(e, Cancelled) and e.reason == CancelReason.SELF_TRADE and e.from_book:
            out.append(e.order_id)
    return out


def check_price_time_priority(
    events: list, queue: list[tuple[int, int, int, int]], side: int, limit: int
) -> None:
    """The makers reached are a prefix of the opposite side's queue (price, then time)
    as it stood before the command, each at a price the taker accepts, and every fill
    is at its maker's resting price."""
    touched = touched_makers(events)
    assert touched == [q[0] for q in queue[: len(touched)]], (touched, queue)
    by_id = {q[0]: q for q in queue}
    for e in events:
        if isinstance(e, Fill):
            _, maker_account, maker_price, maker_leaves = by_id[e.maker_order]
            assert e.price == maker_price, "fill not at the resting order's price"
            assert e.maker_account == maker_account
            assert e.maker_leaves == maker_leaves - e.qty
            assert e.price <= limit if side == BUY else e.price >= limit
    # every maker reached but the last was used up or cancelled
    fills = [e for e in events if isinstance(e, Fill)]
    for f in fills[:-1]:
        assert f.maker_leaves == 0, "a later maker traded before an earlier one was done"


def check_common_event_properties(events: list) -> None:
    for e in events:
        if isinstance(e, Fill):
            assert e.taker_account != e.maker_account, f"self-trade: {e}"
            assert e.qty > 0


# ---------------------------------------------------------------------------
# One-step reference model of matching
# ---------------------------------------------------------------------------


def crosses(side: int, limit: int, price: int) -> bool:
    return price <= limit if side == BUY else price >= limit


def fok_fillable(queue, taker: int, side: int, limit: int, qty: int, stp: int) -> int:
    total = 0
    for _, account, price, leaves in queue:
        if not crosses(side, limit, price) or total >= qty:
            break
        if account == taker:
            if stp == Stp.CANCEL_RESTING:
                continue
            break
        total += leaves
    return total


@dataclass
class MatchResult:
    events: list
    opp_queue: list
    resting: tuple | None  # (order_id, account, price, leaves) added to the own side
    deltas: dict  # account -> [cash, position]
    next_trade: int
    last_px: int


def model_match(
    *,
    symbol: str,
    taker: int,
    order_id: int,
    side: int,
    limit: int,
    qty: int,
    stp: int,
    tif: int,
    rests: bool,
    queue: list,
    trade_id: int,
) -> MatchResult:
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    if tif == Tif.FOK and fok_fillable(queue, taker, side, limit, qty, stp) < qty:
        cancel = Cancelled(taker, order_id, symbol, side, limit, qty, CancelReason.FOK, False)
        return MatchResult([cancel], list(queue), None, deltas, trade_id, 0)
    maker_side = SELL if side == BUY else BUY
    sign = 1 if side == BUY else -1
    q = list(queue)
    events: list = []
    remaining, cum, notional, last_px = qty, 0, 0, 0
    self_cancel = False
    i = 0
    while i < len(q) and remaining and crosses(side, limit, q[i][2]):
        oid, account, px, leaves = q[i]
        if account == taker:
            if stp == Stp.CANCEL_INCOMING:
                self_cancel = True
                break
            events.append(
                Cancelled(taker, oid, symbol, maker_side, px, leaves, CancelReason.SELF_TRADE, True)
            )
            i += 1
            if stp == Stp.CANCEL_BOTH:
                self_cancel = True
                break
            continue
        fill = min(leaves, remaining)
        remaining -= fill
        events.append(
            Fill(
                trade_id, symbol, side, px, fill, taker, order_id, remaining,
                account, oid, leaves - fill,
            )
        )  # fmt: skip
        trade_id += 1
        cum += fill
        notional += px * fill
        last_px = px
        deltas[account][0] += sign * px * fill
        deltas[account][1] -= sign * fill
        if leaves - fill:
            q[i] = (oid, account, px, leaves - fill)
        else:
            i += 1
    if cum:
        deltas[taker][0] -= sign * notional
        deltas[taker][1] += sign * cum
        events.append(Executed(taker, order_id, cum, notional, (2 * notional + cum) // (2 * cum)))
    resting = None
    if remaining:
        if rests and not self_cancel:
            events.append(Rested(taker, order_id, symbol, side, limit, remaining))
            resting = (order_id, taker, limit, remaining)
        else:
            reason = CancelReason.SELF_TRADE if self_cancel else CancelReason.IOC
            events.append(Cancelled(taker, order_id, symbol, side, limit, remaining, reason, False))
    return MatchResult(events, q[i:], resting, deltas, trade_id, last_px)


def insert_in_priority(queue: list, entry: tuple, side: int) -> list:
    """Where a newly resting order goes: behind every order at its price or better."""
    price = entry[2]
    pos = 0
    for n, (_, _, p, _) in enumerate(queue):
        if (p >= price) if side == BUY else (p <= price):
            pos = n + 1
    return queue[:pos] + [entry] + queue[pos:]


# ---------------------------------------------------------------------------
# Reject reasons: what would justify each code, worked out from the snapshot
# ---------------------------------------------------------------------------


def size_price_reasons(spec, risk: RiskLimits, qty: int, price: int | None, band) -> set[int]:
    """``price`` None: a market order that names no price (0), as it must."""
    reasons = set()
    if qty <= 0 or qty % spec.lot:
        reasons.add(Reject.BAD_QTY)
    if qty > risk.max_order_qty:
        reasons.add(Reject.MAX_ORDER_SIZE)
    if price is None:
        pass
    elif price <= 0 or price % spec.tick:
        reasons.add(Reject.BAD_PRICE)
    elif not band[0] <= price <= band[1]:
        reasons.add(Reject.PRICE_BAND)
    return reasons


def position_reason(risk: RiskLimits, held, side: int, qty: int, freed: int) -> set[int]:
    position, open_buy, open_sell = held
    limit = risk.max_position
    if side == BUY and position + open_buy - freed + qty > limit:
        return {Reject.POSITION_LIMIT}
    if side == SELL and position - open_sell + freed - qty < -limit:
        return {Reject.POSITION_LIMIT}
    return set()


# ---------------------------------------------------------------------------
# The harness: applies a command and checks everything about it
# ---------------------------------------------------------------------------


class Harness:
    def __init__(self, cfg, risk: RiskLimits) -> None:
        self.cfg = cfg
        # a few symbols (cheaper snapshots), with a dynamic band as wide as any price in
        # the static band so no pause interrupts this model of matching; the pause and
        # buying power have their own properties (test_engine_hardening.py)
        self.symbols = {sym: replace(cfg.symbols[sym], dynamic_band_bps=9_999) for sym in SYMBOLS}
        self.risk = risk
        self.engine = Engine(self.symbols, risk)
        self.first: dict[tuple[int, str], object] = {}  # (account, cl_ord_id) -> first answer
        self.acct_stp: dict[int, int] = {}
        self.names: set[str] = set()
        self.next_order = 1
        self.next_trade = 1
        self.commands: list = []
        self.encoded: list[bytes] = []
        self.hashes: list[str] = []
        # for the stream generators
        self.accepted: list[tuple[int, int]] = []  # (order_id, account)
        self.used: list[tuple[int, str]] = []  # (account, cl_ord_id)
        self.counter = 0

    @property
    def next_account(self) -> int:
        return len(self.acct_stp) + 1

    def apply(self, cmd) -> list:
        note(repr(cmd))
        engine = self.engine
        before = take_snapshot(engine)
        events = engine.apply(cmd)
        self.commands.append(cmd)
        self.encoded.append(msgspec.msgpack.encode(events))
        check_invariants(engine, self.risk)
        check_common_event_properties(events)
        if isinstance(cmd, CreateAccount):
            self._check_create(cmd, events, before)
        else:
            self._check_order_command(cmd, events, before)
        self.hashes.append(engine.state_hash())
        for e in events:  # coverage statistics (pytest --hypothesis-show-statistics)
            if isinstance(e, Rejected):
                event(f"rejected {Reject(e.code).name}")
            elif isinstance(e, Cancelled):
                event(f"cancelled {CancelReason(e.reason).name} from_book={e.from_book}")
            elif isinstance(e, Replaced):
                event(f"replaced kept_priority={e.kept_priority}")
            else:
                event(type(e).__name__)
        return events

    # -- helpers ------------------------------------------------------------

    def _assert_unchanged(self, before: Before) -> None:
        assert self.engine.state_hash() == before.hash, "command changed the state"

    def _assert_only_dedup_recorded(self, before: Before) -> None:
        """A Rejected order command changes nothing but the engine's record of its answer
        (which makes a repeat come back as a Duplicate: checked when one is sent)."""
        assert core_state(self.engine) == before.core, "rejected command changed the state"

    def _check_books_after(self, before: Before, changed: dict) -> None:
        after = snapshot_books(self.engine)
        expected = {**before.books, **changed}
        assert after == expected

    def _check_ledger_after(self, before: Before, deltas: dict) -> None:
        after = snapshot_ledger(self.engine)
        expected = {}
        for account, (cash, positions) in before.ledger.items():
            positions = dict(positions)
            cash += sum(d[0] for (a, _), d in deltas.items() if a == account)
            for (a, sym), d in deltas.items():
                if a == account:
                    positions[sym] = positions.get(sym, 0) + d[1]
            expected[account] = (cash, {s: p for s, p in positions.items() if p})
        assert after == expected

    # -- CreateAccount ------------------------------------------------------

    def _check_create(self, cmd: CreateAccount, events: list, before: Before) -> None:
        if not NAME_OK.fullmatch(cmd.name):
            assert events == [Rejected(0, cmd.name, Reject.BAD_NAME)]
            self._assert_unchanged(before)
        elif cmd.name in self.names:
            assert events == [Rejected(0, cmd.name, Reject.NAME_TAKEN)]
            self._assert_unchanged(before)
        else:
            assert events[0] == AccountCreated(self.next_account, cmd.name)
            stp = cmd.stp if cmd.stp != Stp.DEFAULT else self.risk.default_stp
            self.acct_stp[self.next_account] = stp
            self.names.add(cmd.name)

    # -- NewOrder / CancelOrder / ReplaceOrder ---------------------------------

    def _check_order_command(self, cmd, events: list, before: Before) -> None:
        account, cl = cmd.account, cmd.cl_ord_id
        key = (account, cl)
        if account not in self.acct_stp:
            assert events == [Rejected(account, cl, Reject.UNKNOWN_ACCOUNT)]
            self._assert_unchanged(before)
            return
        if key in self.first:
            assert events == [Duplicate(account, cl, self.first[key])]
            self._assert_unchanged(before)
            return
        assert not any(isinstance(e, Duplicate) for e in events)
        self.first[key] = events[0]
        self.used.append(key)
        if isinstance(cmd, NewOrder):
            self._check_new_order(cmd, events, before)
        elif isinstance(cmd, CancelOrder):
            self._check_cancel(cmd, events, before)
        else:
            self._check_replace(cmd, events, before)

    def _check_match(
        self, before: Before, events: list, *, symbol, taker, order_id, side, limit, qty, stp,
        tif, rests, own_queue,
    ) -> None:  # fmt: skip
        opp_side = SELL if side == BUY else BUY
        queue = before.books[symbol, opp_side]
        body = events[1:]
        # the explicit properties first (clearer failures), then the exact model
        check_price_time_priority(body, queue, side, limit)
        taker_fills = [e for e in body if isinstance(e, Fill) and e.taker_order == order_id]
        if tif == Tif.FOK:
            assert sum(f.qty for f in taker_fills) in (0, qty), "FOK partially filled"
        if not rests:
            assert not any(isinstance(e, Rested) for e in body), "IOC/FOK/market rested"
            assert order_id not in self.engine.orders
        result = model_match(
            symbol=symbol, taker=taker, order_id=order_id, side=side, limit=limit, qty=qty,
            stp=stp, tif=tif, rests=rests, queue=queue, trade_id=self.next_trade,
        )  # fmt: skip
        assert body == result.events
        self.next_trade = result.next_trade
        if result.resting is not None:
            own_queue = insert_in_priority(own_queue, result.resting, side)
        self._check_books_after(
            before, {(symbol, opp_side): result.opp_queue, (symbol, side): own_queue}
        )
        self._check_ledger_after(
            before, {(account, symbol): d for account, d in result.deltas.items()}
        )
        book = self.engine.books[symbol]
        if result.last_px:
            assert book.last_price == result.last_px
        # the static band stays on the reference, whatever trades
        assert (book.band_lo, book.band_hi) == before.bands[symbol]

    def _check_new_order(self, cmd: NewOrder, events: list, before: Before) -> None:
        account = cmd.account
        spec = self.symbols.get(cmd.symbol)
        limit_order = cmd.ord_type == OrdType.LIMIT
        if spec is None:
            reasons = {Reject.UNKNOWN_SYMBOL}
        else:
            band = before.bands[cmd.symbol]
            price = cmd.price if limit_order else None
            reasons = size_price_reasons(spec, self.risk, cmd.qty, price, band)
            if not limit_order and cmd.price:
                reasons.add(Reject.BAD_PRICE)
            if limit_order:
                if cmd.post_only and cmd.tif != Tif.GTC:
                    reasons.add(Reject.BAD_TIF)
            elif cmd.tif == Tif.GTC or cmd.post_only:
                reasons.add(Reject.BAD_TIF)
            held = before.risk.get((account, cmd.symbol), (0, 0, 0))
            reasons |= position_reason(self.risk, held, cmd.side, cmd.qty, 0)
            if cmd.tif == Tif.GTC and before.open_orders[account] >= self.risk.max_open_orders:
                reasons.add(Reject.MAX_OPEN_ORDERS)
            if cmd.post_only and limit_order:
                opp = before.books[cmd.symbol, SELL if cmd.side == BUY else BUY]
                if opp and crosses(cmd.side, cmd.price, opp[0][2]):
                    reasons.add(Reject.POST_ONLY_WOULD_TRADE)
        first = events[0]
        if isinstance(first, Rejected):
            assert events == [Rejected(account, cmd.cl_ord_id, first.code)]
            assert first.code in reasons, (first.code, reasons)
            self._assert_only_dedup_recorded(before)
            return
        assert not reasons, f"accepted an order that should be rejected: {reasons}"
        order_id = self.next_order
        self.next_order += 1
        assert first == Accepted(
            account, cmd.cl_ord_id, order_id, cmd.symbol, cmd.side, cmd.price, cmd.qty
        )
        self.accepted.append((order_id, account))
        band = before.bands[cmd.symbol]
        # market orders are collared at the edge of the band
        limit = cmd.price if limit_order else band[1] if cmd.side == BUY else band[0]
        self._check_match(
            before, events, symbol=cmd.symbol, taker=account, order_id=order_id,
            side=cmd.side, limit=limit, qty=cmd.qty, stp=cmd.stp or self.acct_stp[account],
            tif=cmd.tif, rests=cmd.tif == Tif.GTC,
            own_queue=before.books[cmd.symbol, cmd.side],
        )  # fmt: skip

    def _owned(self, before: Before, account: int, order_id: int):
        order = before.orders.get(order_id)
        return order if order is not None and order[0] == account else None

    def _check_cancel(self, cmd: CancelOrder, events: list, before: Before) -> None:
        order = self._owned(before, cmd.account, cmd.order_id)
        if order is None:
            rejected = Rejected(cmd.account, cmd.cl_ord_id, Reject.UNKNOWN_ORDER, cmd.order_id)
            assert events == [rejected]
            self._assert_only_dedup_recorded(before)
            return
        account, symbol, side, price, leaves, _ = order
        assert events == [
            Cancelled(
                account,
                cmd.order_id,
                symbol,
                side,
                price,
                leaves,
                CancelReason.USER,
                True,
                cmd.cl_ord_id,
            )
        ]
        own = [q for q in before.books[symbol, side] if q[0] != cmd.order_id]
        self._check_books_after(before, {(symbol, side): own})
        self._check_ledger_after(before, {})

    def _check_replace(self, cmd: ReplaceOrder, events: list, before: Before) -> None:
        account = cmd.account
        order = self._owned(before, account, cmd.order_id)
        if order is None:
            reasons = {Reject.UNKNOWN_ORDER}
        else:
            _, symbol, side, old_price, old_qty, stp = order
            spec = self.symbols[symbol]
            resting = self.engine.orders.get(cmd.order_id)  # a post-only one never fills
            post_only = resting is not None and resting.post_only
            if cmd.price == old_price and 0 < cmd.qty <= old_qty:  # a size cut: always fine
                reasons = {Reject.BAD_QTY} if cmd.qty % spec.lot else set()
            else:
                reasons = size_price_reasons(
                    spec, self.risk, cmd.qty, cmd.price, before.bands[symbol]
                )
                held = before.risk[account, symbol]
                reasons |= position_reason(self.risk, held, side, cmd.qty, old_qty)
                opp = before.books[symbol, SELL if side == BUY else BUY]
                if post_only and opp and crosses(side, cmd.price, opp[0][2]):
                    reasons.add(Reject.POST_ONLY_WOULD_TRADE)
        first = events[0]
        if isinstance(first, Rejected):
            assert events == [Rejected(account, cmd.cl_ord_id, first.code, cmd.order_id)]
            assert first.code in reasons, (first.code, reasons)
            self._assert_only_dedup_recorded(before)
            return
        assert not reasons, f"accepted a replace that should be rejected: {reasons}"
        keep = cmd.price == old_price and cmd.qty <= old_qty
        assert first == Replaced(
            account, cmd.cl_ord_id, cmd.order_id, symbol, side, old_price, old_qty,
            cmd.price, cmd.qty, keep,
        )  # fmt: skip
        own_before = before.books[symbol, side]
        if keep:
            assert events == [first]
            own = [(q[0], q[1], q[2], cmd.qty) if q[0] == cmd.order_id else q for q in own_before]
            self._check_books_after(before, {(symbol, side): own})
            self._check_ledger_after(before, {})
            return
        own = [q for q in own_before if q[0] != cmd.order_id]
        self._check_match(
            before, events, symbol=symbol, taker=account, order_id=cmd.order_id, side=side,
            limit=cmd.price, qty=cmd.qty, stp=stp, tif=Tif.GTC, rests=True, own_queue=own,
        )  # fmt: skip

    # -- replay -------------------------------------------------------------

    def check_replay(self) -> None:
        """The same commands into a fresh engine give the same events and state."""
        fresh = Engine(self.symbols, self.risk)
        for n, cmd in enumerate(self.commands):
            assert msgspec.msgpack.encode(fresh.apply(cmd)) == self.encoded[n], n
            assert fresh.state_hash() == self.hashes[n], n
        assert fresh.state_hash() == self.engine.state_hash()


# ---------------------------------------------------------------------------
# Stream generation
# ---------------------------------------------------------------------------

RISKS = {
    "default": {},
    "tight": dict(max_order_qty=1_000, max_position=30, max_open_orders=4),
    "medium": dict(max_position=1_500, max_open_orders=3),
}
ORDER_KINDS = (
    ["limit"] * 5
    + ["limit_ioc", "limit_fok", "market_ioc", "market_fok", "post_only", "post_only"]
    + ["market_gtc", "post_only_ioc", "market_post_only"]  # BAD_TIF
)
COMMAND_KINDS = ["new"] * 12 + ["cancel"] * 3 + ["replace"] * 3 + ["account"]
stps = st.sampled_from(list(Stp))
sides = st.sampled_from([BUY, SELL])


def make_risk(cfg, name: str) -> RiskLimits:
    return replace(cfg.risk, **RISKS[name])


def draw_qty(data, spec, risk: RiskLimits) -> int:
    kind = data.draw(st.sampled_from(["ok"] * 9 + ["zero", "negative", "off_lot", "huge"]))
    lot = spec.lot
    if kind == "ok":
        return data.draw(st.integers(1, 12)) * lot
    return {
        "zero": 0,
        "negative": -lot,
        "off_lot": lot + 1 if lot > 1 else 2 * lot + 50,  # (lot 1: just a valid odd size)
        "huge": (risk.max_order_qty // lot + 1) * lot,
    }[kind]


def draw_price(data, spec, engine: Engine, symbol: str) -> int:
    kind = data.draw(
        st.sampled_from(["near"] * 12 + ["zero", "negative", "off_tick", "above", "below"])
    )
    tick = spec.tick
    if kind == "near":
        return spec.reference + data.draw(st.integers(-4, 4)) * tick
    book = engine.books.get(symbol)
    lo, hi = (book.band_lo, book.band_hi) if book else (spec.reference, spec.reference)
    return {
        "zero": 0,
        "negative": -tick,
        "off_tick": spec.reference + tick // 2 if tick > 1 else spec.reference + 7 * tick,
        "above": (hi // tick + 1) * tick,
        "below": ((lo - 1) // tick) * tick,
    }[kind]


def draw_cl(data, h: Harness, account: int) -> tuple[int, str]:
    """Usually a fresh client order id; sometimes a repeat (own, or another account's)."""
    repeat = data.draw(st.sampled_from(["fresh"] * 8 + ["mine", "any"]))
    if repeat == "mine" and h.used:
        return data.draw(st.sampled_from(h.used))
    if repeat == "any" and h.used:
        return account, data.draw(st.sampled_from(h.used))[1]
    h.counter += 1
    return account, f"c{h.counter}"


def draw_order_ref(data, h: Harness, account: int) -> tuple[int, int]:
    """(account, order_id): mostly an accepted order, by its owner or someone else."""
    how = data.draw(st.sampled_from(["owner"] * 6 + ["other", "other", "random"]))
    if how == "random" or not h.accepted:
        return account, data.draw(st.integers(-1, 300))
    order_id, owner = data.draw(st.sampled_from(h.accepted))
    return (owner if how == "owner" else account), order_id


def headroom(engine: Engine, account: int, symbol: str, side: int) -> int:
    """How many more shares ``account`` may have open on ``side`` under the position limit."""
    acct = engine.accounts.get(account)
    holding = acct.holdings.get(symbol) if acct else None
    position, open_buy, open_sell = (
        (holding.position, holding.open[BUY], holding.open[SELL]) if holding else (0, 0, 0)
    )
    limit = engine.risk.max_position
    return limit - position - open_buy if side == BUY else limit + position - open_sell


def draw_boundary_qty(data, qty: int, lot: int, room: int) -> int:
    """Sometimes a size just at, or one lot past, the position limit."""
    if room <= 0 or data.draw(st.integers(0, 4)) != 0:
        return qty
    return room // lot * lot + data.draw(st.sampled_from([0, lot]))


def draw_command(data, h: Harness, cfg):
    kind = data.draw(st.sampled_from(COMMAND_KINDS))
    accounts = list(range(1, h.next_account))
    account = data.draw(st.sampled_from(accounts * 8 + [h.next_account]))  # rarely unknown
    if kind == "account":
        name = data.draw(st.sampled_from(["new", "new", "taken", "", "bad name", "x" * 33]))
        if name == "new":
            h.counter += 1
            name = f"n{h.counter}"
        elif name == "taken":
            name = data.draw(st.sampled_from(sorted(h.names)))
        return CreateAccount(name, "hash", data.draw(stps))
    if kind == "new":
        account, cl = draw_cl(data, h, account)
        symbol = data.draw(
            st.sampled_from(["AAPL", "AAPL", "TSLA", "PENNY"] * 5 + [UNKNOWN_SYMBOL])
        )
        spec = cfg.symbols.get(symbol, cfg.symbols["AAPL"])
        side = data.draw(sides)
        qty = draw_qty(data, spec, h.risk)
        if symbol in h.engine.books:
            room = headroom(h.engine, account, symbol, side)
            qty = draw_boundary_qty(data, qty, spec.lot, room)
        price = draw_price(data, spec, h.engine, symbol)
        stp = data.draw(stps)
        otype = data.draw(st.sampled_from(ORDER_KINDS))
        market = otype.startswith("market")
        if market:
            price = data.draw(st.sampled_from([0, 0, price]))  # ignored for market orders
        tif = Tif.GTC
        if otype.endswith("ioc"):
            tif = Tif.IOC
        elif otype.endswith("fok"):
            tif = Tif.FOK
        return NewOrder(
            account, cl, symbol, side, qty, price,
            OrdType.MARKET if market else OrdType.LIMIT, tif, otype.startswith("post") or
            otype == "market_post_only", stp,
        )  # fmt: skip
    account, order_id = draw_order_ref(data, h, account)
    account, cl = draw_cl(data, h, account)
    if kind == "cancel":
        return CancelOrder(account, cl, order_id)
    order = h.engine.orders.get(order_id)
    if order is not None and data.draw(st.booleans()):
        # same price, same or smaller size: keeps priority (if it is the owner)
        lot = cfg.symbols[order.symbol].lot
        qty = data.draw(st.integers(1, order.leaves // lot)) * lot
        return ReplaceOrder(account, cl, order_id, order.price, qty)
    symbol = order.symbol if order is not None else "AAPL"
    spec = cfg.symbols[symbol]
    qty = draw_qty(data, spec, h.risk)
    if order is not None:  # the order's own open size is freed by the replace
        room = headroom(h.engine, order.account, symbol, order.side) + order.leaves
        qty = draw_boundary_qty(data, qty, spec.lot, room)
    return ReplaceOrder(account, cl, order_id, draw_price(data, spec, h.engine, symbol), qty)


def open_accounts(h: Harness, data, n: int) -> None:
    for i in range(1, n + 1):
        created = h.apply(CreateAccount(f"u{i}", "hash", data.draw(stps)))[0]
        assert created == AccountCreated(i, f"u{i}")


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------


@settings(SETTINGS, max_examples=150)
@given(data=st.data())
def test_random_streams_keep_every_invariant(cfg, data):
    """Streams that mostly reference orders that really exist (tracked while drawing)."""
    h = Harness(cfg, make_risk(cfg, data.draw(st.sampled_from(list(RISKS)))))
    open_accounts(h, data, data.draw(st.integers(3, 4)))
    for _ in range(data.draw(st.integers(1, 80))):
        h.apply(draw_command(data, h, cfg))
    h.check_replay()


@st.composite
def blind_streams(draw):
    """Streams built without looking at the engine: order ids are small integers, so
    cancels and replaces hit real, dead, foreign and unknown orders alike."""
    n = draw(st.integers(1, 60))
    commands = []
    for _ in range(n):
        account = draw(st.integers(1, 4))
        cl = f"c{draw(st.integers(0, 40))}"  # small pool: plenty of repeats
        kind = draw(st.sampled_from(["new"] * 6 + ["cancel", "replace"]))
        symbol = draw(st.sampled_from(["AAPL", "TSLA"]))
        price = 1_700_000 if symbol == "AAPL" else 1_600_000
        price += draw(st.integers(-3, 3)) * 100
        qty = draw(st.integers(1, 8))
        if kind == "new":
            otype = draw(st.sampled_from(ORDER_KINDS))
            market = otype.startswith("market")
            tif = Tif.IOC if otype.endswith("ioc") else Tif.FOK if otype.endswith("fok") else 1
            commands.append(
                NewOrder(
                    account,
                    cl,
                    symbol,
                    draw(sides),
                    qty,
                    price,
                    OrdType.MARKET if market else OrdType.LIMIT,
                    Tif(tif),
                    "post" in otype,
                    draw(stps),
                )  # fmt: skip
            )
        elif kind == "cancel":
            commands.append(CancelOrder(account, cl, draw(st.integers(1, n))))
        else:
            commands.append(ReplaceOrder(account, cl, draw(st.integers(1, n)), price, qty))
    return commands


@SETTINGS
@given(stps=st.lists(stps, min_size=4, max_size=4), commands=blind_streams())
def test_blind_streams_keep_every_invariant(cfg, stps, commands):
    h = Harness(cfg, cfg.risk)
    for i, stp in enumerate(stps, 1):
        h.apply(CreateAccount(f"u{i}", "hash", stp))
    for cmd in commands:
        h.apply(cmd)
    h.check_replay()
