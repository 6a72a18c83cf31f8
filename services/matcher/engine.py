"""The exchange's state machine: commands in, events out, nothing else.

No sockets, no clock, no randomness and no unordered iteration: the same commands in
the same order always give the same events and the same state hash, so the journal
can rebuild the live state exactly (docs/architecture.md, invariant 1). The matcher service is
the only caller that changes live state.

The order path is written for CPython's speed: enum members and limits are bound
once, resting orders point at their owner's account and holding (no lookups per
fill), and a passive order that cannot trade skips the matching loop entirely.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable

import msgspec
from msgspec.structs import astuple

from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    EndOfDay,
    Lead,
    NewOrder,
    Reopen,
    ReplaceOrder,
    SetPassword,
    SetSession,
)
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import (
    ACCOUNT_NAME_RE,
    Accepted,
    AccountBlocked,
    AccountCreated,
    AdminDone,
    AuctionDone,
    Cancelled,
    CancelReason,
    CashAdjusted,
    ClosePrice,
    DayEnded,
    Duplicate,
    Event,
    Executed,
    Fill,
    Indicative,
    OrdType,
    PasswordChanged,
    ReferenceSet,
    Reject,
    Rejected,
    Replaced,
    Rested,
    Session,
    SessionChanged,
    Side,
    Stp,
    SymbolHalted,
    Tif,
    TradingPause,
)
from services.matcher import auction
from services.matcher.book import Book, BookSide
from services.matcher.state import SHARD_MASK, Account, ExactlyOnce, Holding, Order, resting

# Codes as plain ints, bound once: an enum lookup costs ~100 ns, and comparisons or
# list indexing with an IntEnum operand miss CPython's specialised fast paths.
# levels of indicative work each book-changing command in a call pays for (_indicate)
INDICATIVE_LEVELS = 64
BUY = int(Side.BUY)
SELL = int(Side.SELL)
LIMIT = int(OrdType.LIMIT)
GTC = int(Tif.GTC)
IOC = int(Tif.IOC)
FOK = int(Tif.FOK)
DAY = int(Tif.DAY)
GTD = int(Tif.GTD)
ON_CLOSE = int(Tif.CLOSE)
CLOSED = int(Session.CLOSED)
PRE_OPEN = int(Session.PRE_OPEN)
CONTINUOUS = int(Session.CONTINUOUS)
PRE_CLOSE = int(Session.PRE_CLOSE)
CANCEL_RESTING = int(Stp.CANCEL_RESTING)
CANCEL_INCOMING = int(Stp.CANCEL_INCOMING)
CANCEL_BOTH = int(Stp.CANCEL_BOTH)
BY_USER = int(CancelReason.USER)
BY_IOC = int(CancelReason.IOC)
BY_FOK = int(CancelReason.FOK)
BY_STP = int(CancelReason.SELF_TRADE)
BY_KILL = int(CancelReason.KILL_SWITCH)
BY_PAUSE = int(CancelReason.VOLATILITY_PAUSE)
BY_BAND = int(CancelReason.OUTSIDE_BAND)
BY_EXPIRY = int(CancelReason.EXPIRED)
BY_AUCTION = int(CancelReason.AUCTION)
# a level's queue methods, bound once: compiled, a method call on a queue (an untyped
# object) would look the method up by name each time
queue_append = deque.append
queue_popleft = deque.popleft


def session_reject(session: int, tif: int) -> int:
    """Why a new order with ``tif`` is not taken in ``session`` (not CONTINUOUS), or 0."""
    if session == CLOSED:
        return Reject.TIF_NOT_NOW if tif == ON_CLOSE else Reject.MARKET_CLOSED
    if tif in (IOC, FOK):  # a call period: nothing executes at once
        return Reject.TIF_NOT_NOW
    return 0


# a long command (an end of day, an uncross, a kill over a deep book) calls the engine's
# ``progress`` every this many orders it works through: the matcher beats from it, so a
# primary busy for longer than the heartbeat's timeout is not taken for dead
PROGRESS_EVERY = 1024
PROGRESS_MASK = PROGRESS_EVERY - 1  # a power of two: a count's low bits say when


def by_order_id(order: Order) -> int:
    return order.order_id


def date_ok(date: int) -> bool:
    """Whether ``date`` reads as a YYYYMMDD date (the calendar is the scheduler's)."""
    return 19000101 <= date <= 99991231 and 1 <= date // 100 % 100 <= 12 and 1 <= date % 100 <= 31


class Engine:
    def __init__(self, symbols: dict[str, SymbolSpec], risk: RiskLimits | None = None) -> None:
        # RiskLimits.check (every loaded config passes it) keeps each size, position and
        # sum of cash inside int64: the compiled build holds them as C integers, and one
        # that would not fit raises OverflowError there instead of wrapping
        self.risk = risk = risk or RiskLimits()
        self.max_order_qty = risk.max_order_qty
        self.max_position = risk.max_position
        self.max_open_orders = risk.max_open_orders
        self.short_limit = risk.short_limit
        self.credit = risk.credit_limit
        self.max_price = risk.max_price
        self.max_cash = risk.max_cash
        self.books = {name: Book(spec, risk.max_price) for name, spec in sorted(symbols.items())}
        self.paused: set[str] = set()  # symbols in a volatility pause (the matcher reopens)
        self.accounts: dict[int, Account] = {}
        self.names: dict[str, int] = {}
        self.orders: dict[int, Order] = {}
        self.next_account = 1
        self.next_order = 1
        self.next_trade = 1
        self._handlers = {
            NewOrder: self._new_order,
            CancelOrder: self._cancel,
            ReplaceOrder: self._replace,
            CreateAccount: self._create_account,
            SetPassword: self._set_password,
            Admin: self._admin,
            Reopen: self._reopen,
            Lead: self._lead,
            SetSession: self._set_session_cmd,
            EndOfDay: self._end_of_day_cmd,
        }
        self.halted: set[str] = set()  # symbols an operator halted
        self.trading_date = 0  # YYYYMMDD; 0 until the first EndOfDay starts a day
        self.closes: dict[str, int] = {}  # official close per symbol of the last ended day
        # set by the matcher (its beats); never part of the state, never read back
        self.progress: Callable[[], None] | None = None

    def _progress(self) -> None:
        if self.progress is not None:
            self.progress()

    def apply(self, cmd) -> list[Event]:
        """Apply one command; the returned events describe everything that changed."""
        kind = type(cmd)
        if kind is NewOrder:  # the two commonest, without the handlers' lookup
            return self._new_order(cmd)
        if kind is CancelOrder:
            return self._cancel(cmd)
        return self._handlers[kind](cmd)

    def apply_batch(self, commands: list) -> list[list[Event]]:
        """``apply`` for each command in order (the matcher sequences whole batches)."""
        return [self.apply(cmd) for cmd in commands]

    # -- accounts -----------------------------------------------------------

    def _create_account(self, cmd: CreateAccount) -> list[Event]:
        name = cmd.name
        if not ACCOUNT_NAME_RE.fullmatch(name):
            return [Rejected(0, name, Reject.BAD_NAME)]
        if name in self.names:
            return [Rejected(0, name, Reject.NAME_TAKEN)]
        account = self.next_account
        self.next_account += 1
        stp = cmd.stp if cmd.stp != Stp.DEFAULT else self.risk.default_stp
        acct = self.accounts[account] = Account(account, name, cmd.password_hash, stp)
        self.names[name] = account
        opening = self.risk.opening_cash
        if not opening:
            return [AccountCreated(account, name)]
        acct.cash = opening
        return [AccountCreated(account, name), CashAdjusted(account, opening, opening)]

    def _set_password(self, cmd: SetPassword) -> list[Event]:
        acct = self.accounts.get(cmd.account)
        if acct is None:
            return [Rejected(cmd.account, cmd.cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        first = acct.seen.first(cmd.cl_ord_id)
        if first is not None:
            return [Duplicate(cmd.account, cmd.cl_ord_id, first)]
        acct.password_hash = cmd.password_hash
        return [acct.seen.add(PasswordChanged(cmd.account, cmd.cl_ord_id))]

    # -- operators ----------------------------------------------------------

    def _admin(self, cmd: Admin) -> list[Event]:
        """An operator's action; the gateway checked the role before sequencing it."""
        operator = self.accounts.get(cmd.account)
        if operator is None:
            return [Rejected(cmd.account, cmd.cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        first = operator.seen.first(cmd.cl_ord_id)
        if first is not None:
            return [Duplicate(cmd.account, cmd.cl_ord_id, first)]
        action = cmd.action
        events: list[Event] = []
        code = 0
        if action == "end_of_day":
            if not self._next_date_ok(cmd.date):
                return [operator.seen.add(Rejected(cmd.account, cmd.cl_ord_id, Reject.MALFORMED))]
            events = self._end_day(cmd.date)
            # the day's exactly-once tables are gone: the answer is the new day's first
            done = operator.seen.add(AdminDone(cmd.account, cmd.cl_ord_id, action))
            return [done, *events]
        if action in ("kill", "unkill", "deposit"):
            target = self.accounts.get(cmd.target)
            if target is None:
                code = Reject.UNKNOWN_ACCOUNT
            elif action == "deposit":
                code = self._deposit(target, cmd.amount, events)
            elif action == "kill":
                cancelled = self._kill(target, events)
                events.append(AccountBlocked(target.account, True, cancelled))
            else:
                target.blocked = False
                events.append(AccountBlocked(target.account, False, 0))
        else:
            book = self.books.get(cmd.symbol)
            if book is None:
                code = Reject.UNKNOWN_SYMBOL
            elif action == "reference":
                if cmd.price <= 0 or cmd.price % book.tick:
                    code = Reject.BAD_PRICE
                elif cmd.price > self.max_price:
                    code = Reject.VALUE_LIMIT
                else:
                    book.set_band(cmd.price)
                    events.append(ReferenceSet(cmd.symbol, cmd.price, book.band_lo, book.band_hi))
                    self._cancel_outside_band(book, events)
            elif action == "session":
                if cmd.state not in (CLOSED, PRE_OPEN, CONTINUOUS, PRE_CLOSE):
                    code = Reject.MALFORMED
                else:
                    self._move(book, cmd.state, events)
            else:
                halted = action == "halt"
                was_halted = cmd.symbol in self.halted
                if halted:
                    self.halted.add(cmd.symbol)
                else:
                    self.halted.discard(cmd.symbol)
                events.append(SymbolHalted(cmd.symbol, halted))
                if not halted and book.paused:  # an operator's resume ends a pause too
                    events.append(self._end_pause(book))
                if not halted and was_halted and book.state == CONTINUOUS and self.trading_date:
                    # a halt ends in a re-opening auction (the scheduler ends its call);
                    # before the first trading day (a journal older than trading days)
                    # trading resumes at once, as it did then
                    book.reopening = True
                    self._move(book, PRE_OPEN, events)
        if code:
            return [operator.seen.add(Rejected(cmd.account, cmd.cl_ord_id, code))]
        done = operator.seen.add(AdminDone(cmd.account, cmd.cl_ord_id, action))
        return [done, *events]

    def _cancel_outside_band(self, book: Book, events: list[Event]) -> None:
        """Orders resting outside a new static band could never trade (any trade at
        their price would pause the symbol, again after each reopen): cancel them."""
        lo, hi = book.band_lo, book.band_hi
        outside = []
        for orders in (book.bids.live_orders(), book.asks.live_orders(), book.held.values()):
            for i, o in enumerate(orders):
                if not i % PROGRESS_EVERY:
                    self._progress()
                if not lo <= o.price <= hi:
                    outside.append(o)
        self._cancel_all(outside, BY_BAND, events)

    def _deposit(self, target: Account, amount: int, events: list[Event]) -> int:
        """Move cash into (or out of) ``target``: 0, or why not. A withdrawal may not
        take the cash below what its open buys and the credit limit need."""
        cash = target.cash + amount
        if not amount or cash > self.max_cash:
            return Reject.BAD_AMOUNT
        if amount > 0 and cash + target.open_sell_qty * self.max_price > self.max_cash:
            return Reject.BAD_AMOUNT  # its open sells' proceeds could pass the ceiling
        if amount < 0 and cash + self.credit < target.open_buy_value:
            return Reject.INSUFFICIENT_FUNDS
        target.cash = cash
        events.append(CashAdjusted(target.account, amount, cash))
        return 0

    def _lead(self, cmd: Lead) -> list[Event]:
        """A new primary's first record: nothing changes (bus.Lead says why it exists)."""
        return []

    def _reopen(self, cmd: Reopen) -> list[Event]:
        """The matcher's word that a volatility pause has run its time."""
        book = self.books.get(cmd.symbol)
        if book is None:
            return [Rejected(0, "", Reject.UNKNOWN_SYMBOL)]
        return [self._end_pause(book)]

    def _end_pause(self, book: Book) -> TradingPause:
        book.paused = False
        self.paused.discard(book.symbol)
        return TradingPause(book.symbol, False, book.last_price, book.dyn_lo, book.dyn_hi)

    def _kill(self, target: Account, events: list[Event]) -> int:
        """Block ``target`` and cancel every open order of it, oldest first."""
        target.blocked = True
        # by order id: the orders dict's own order differs after a snapshot restore
        mine = []
        for i, o in enumerate(self.orders.values()):
            if not i % PROGRESS_EVERY:
                self._progress()
            if o.account == target.account:
                mine.append(o)
        mine.sort(key=by_order_id)
        self._cancel_all(mine, BY_KILL, events)
        return len(mine)

    def _cancel_all(self, orders: list[Order], reason: int, events: list[Event]) -> None:
        """Cancel ``orders`` (live, in the order given) for ``reason``; then the new
        indicative of each symbol in a call period whose book changed."""
        for i, order in enumerate(orders):
            if not i % PROGRESS_EVERY:
                self._progress()
            self._cancel_one(order, reason, events)
        for symbol in sorted({order.symbol for order in orders}):
            self._indicate(self.books[symbol], events)

    def _cancel_one(self, order: Order, reason: int, events: list[Event]) -> None:
        leaves = order.leaves
        from_book = self._take_out(self.books[order.symbol], order)
        events.append(
            Cancelled(
                order.account,
                order.order_id,
                order.symbol,
                order.side,
                order.price,
                leaves,
                reason,
                from_book,
            )
        )

    # -- orders -------------------------------------------------------------

    def _new_order(self, cmd: NewOrder) -> list[Event]:
        # one call reads every field: compiled, ten attribute reads cost far more
        (
            account, cl_ord_id, symbol, side, qty, price, ord_type, tif, post_only, stp,
            expire_date,
        ) = astuple(cmd)  # fmt: skip
        acct = self.accounts.get(account)
        if acct is None:
            return [Rejected(account, cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        seen = acct.seen  # ExactlyOnce.first and .add, inlined on the busiest path
        answers = seen.shards[hash(cl_ord_id) & SHARD_MASK]
        first = answers.get(cl_ord_id)
        if first is not None:
            return [Duplicate(account, cl_ord_id, first)]
        # the engine's own equal objects, not the command's copies: the answer kept for
        # good and the resting order then share them, so each command leaves less memory
        account = acct.account
        book = self.books.get(symbol)
        if book is None:
            code = Reject.UNKNOWN_SYMBOL
        else:
            symbol = book.symbol
            # the checks read the command's values as they came: a size or price off the
            # wire may not fit in 64 bits until it has passed them
            code = 0
            session = book.state
            if acct.blocked or symbol in self.halted:
                code = Reject.ACCOUNT_BLOCKED if acct.blocked else Reject.SYMBOL_HALTED
            elif book.paused:
                code = Reject.TRADING_PAUSED
            elif session != CONTINUOUS and session_reject(session, tif):
                code = session_reject(session, tif)
            elif qty <= 0 or qty % book.lot:
                code = Reject.BAD_QTY
            elif qty > self.max_order_qty:
                code = Reject.MAX_ORDER_SIZE
            elif ord_type == LIMIT:
                limit = price
                if price <= 0 or price % book.tick:
                    code = Reject.BAD_PRICE
                elif price < book.band_lo or price > book.band_hi:
                    code = Reject.PRICE_BAND
                elif post_only and tif != GTC and tif != DAY and tif != GTD:
                    code = Reject.BAD_TIF  # post-only is for orders that rest
            elif tif in (GTC, GTD) or post_only:
                code = Reject.BAD_TIF
            elif price:  # a market order names no price
                code = Reject.BAD_PRICE
            elif session == CONTINUOUS and tif != ON_CLOSE:
                # collared at the edge of the static band
                limit = book.band_hi if side == BUY else book.band_lo
            else:  # it waits for an auction, at its collar on tick
                limit = book.collar(side)
            # a GTD order's date; any other order's is ignored (the gateway refuses one)
            expire = 0
            if tif == GTD and not code:
                expire = expire_date
                code = self._expire_reject(expire)
            # what may rest: not IOC or FOK, nor a market order in continuous trading
            rests = (
                tif != IOC
                and tif != FOK
                and (ord_type == LIMIT or session != CONTINUOUS or tif == ON_CLOSE)
            )
            if not code:
                # size and limit passed the checks: they fit in 64 bits (RiskLimits.check
                # bounds max_order_qty and max_price), and the compiled build keeps these
                # two copies as C integers for the arithmetic below
                size = qty
                px = limit
                try:
                    holding = acct.holdings[symbol]
                except KeyError:
                    holding = acct.holdings[symbol] = Holding()
                # limits counting open orders as if they fill
                if side == BUY:
                    if holding.position + holding.open_buy + size > self.max_position:
                        code = Reject.POSITION_LIMIT
                    elif px * size + acct.open_buy_value > acct.cash + self.credit:
                        code = Reject.INSUFFICIENT_FUNDS
                else:
                    after = holding.position - holding.open_sell - size
                    if after < -self.max_position:
                        code = Reject.POSITION_LIMIT
                    elif after < -self.short_limit:
                        code = Reject.INSUFFICIENT_SHARES
                    elif acct.cash + (acct.open_sell_qty + size) * self.max_price > self.max_cash:
                        code = Reject.VALUE_LIMIT  # its proceeds could pass the cash ceiling
                if rests and acct.open_orders >= self.max_open_orders:
                    code = code or Reject.MAX_OPEN_ORDERS
            if not code:
                waits = session != CONTINUOUS or tif == ON_CLOSE  # for an auction
                if waits:
                    crosses = False
                elif side == BUY:
                    best = book.asks.best_key
                    crosses = best is not None and best <= limit
                else:
                    best = book.bids.best_key
                    crosses = best is not None and best <= -limit
                if crosses and post_only:
                    code = Reject.POST_ONLY_WOULD_TRADE
        if code:
            return [seen.add(Rejected(account, cl_ord_id, code))]

        order_id = self.next_order
        self.next_order = order_id + 1
        ack = answers[cl_ord_id] = Accepted(account, cl_ord_id, order_id, symbol, side, price, qty)
        seen.arrived(ack)
        stp = stp or acct.stp
        if waits:
            order = Order(
                order_id, account, symbol, side, limit, qty, stp, acct, holding, post_only,
                tif, expire, ord_type != LIMIT,
            )  # fmt: skip
            return self._wait(book, order, ack)
        if not crosses:  # nothing to match: rest at once, or cancel an IOC/FOK/market
            if rests:
                order = resting(
                    order_id, account, symbol, side, limit, qty, stp, acct, holding, post_only
                )
                if tif != GTC:  # the defaults are GTC's: fewer arguments on the busiest path
                    order.tif = tif
                    order.expire_date = expire
                if side == BUY:  # BookSide.add, inlined on the busiest path
                    book_side, key = book.bids, -limit
                else:
                    book_side, key = book.asks, limit
                level = book_side.levels.get(key) or book_side.new_level(key, limit)
                queue_append(level.orders, order)
                level.qty += size
                level.count += 1
                self.orders[order_id] = order
                acct.open_orders += 1
                if side == BUY:
                    holding.open_buy += size
                    acct.open_buy_value += px * size
                else:
                    holding.open_sell += size
                    acct.open_sell_qty += size
                return [ack, Rested(account, order_id, symbol, side, limit, qty)]
            reason = BY_FOK if tif == FOK else BY_IOC
            return [ack, Cancelled(account, order_id, symbol, side, limit, qty, reason, False)]
        events: list[Event] = [ack]
        if tif == FOK and self._fillable(book, account, side, limit, qty, stp) < qty:
            # what it could fill within the dynamic band falls short: killed, no pause
            events.append(Cancelled(account, order_id, symbol, side, limit, qty, BY_FOK, False))
            return events
        self._execute(
            book, acct, holding, order_id, side, px, size, stp, rests, events, tif, expire
        )
        return events

    def _expire_reject(self, expire: int) -> int:
        """BAD_EXPIRE_DATE unless a GTD order's date is from today on (any date before
        the first trading day); else 0."""
        if not date_ok(expire) or expire < self.trading_date:
            return Reject.BAD_EXPIRE_DATE
        return 0

    def _wait(self, book: Book, order: Order, ack: Accepted) -> list[Event]:
        """A new order that waits for an auction: it rests without matching in a call
        period, and an on-close order before the pre-close is held aside."""
        if order.tif == ON_CLOSE and book.state != PRE_CLOSE:
            book.held[order.order_id] = order
            self.orders[order.order_id] = order
            self._reserve(order)
            return [ack]
        events: list[Event] = [ack, self._place(book, order)]
        self._indicate(book, events)
        return events

    def _replace_risk(self, order: Order, price: int, qty: int) -> int:
        """The limits as for a new order, with the open size being replaced freed."""
        holding = order.holding
        owner = order.owner
        leaves = order.leaves
        if order.side == BUY:
            if holding.position + holding.open_buy - leaves + qty > self.max_position:
                return Reject.POSITION_LIMIT
            needed = owner.open_buy_value - order.price * leaves + price * qty
            if needed > owner.cash + self.credit:
                return Reject.INSUFFICIENT_FUNDS
            return 0
        after = holding.position - holding.open_sell + leaves - qty
        if after < -self.max_position:
            return Reject.POSITION_LIMIT
        if after < -self.short_limit:
            return Reject.INSUFFICIENT_SHARES
        if owner.cash + (owner.open_sell_qty - leaves + qty) * self.max_price > self.max_cash:
            return Reject.VALUE_LIMIT
        return 0

    def _rest(
        self,
        book: Book,
        acct: Account,
        holding: Holding,
        order_id: int,
        side: int,
        price: int,
        qty: int,
        stp: int,
        post_only: bool = False,
        tif: int = GTC,
        expire_date: int = 0,
        market: bool = False,
    ) -> Rested:
        symbol = book.symbol
        order = resting(
            order_id, acct.account, symbol, side, price, qty, stp, acct, holding, post_only
        )
        if tif != GTC or market:  # the defaults are GTC's: fewer arguments
            order.tif = tif
            order.expire_date = expire_date
            order.market = market
        # _place, inlined: a taker's remainder rests this way
        (book.bids if side == BUY else book.asks).add(order)
        self.orders[order_id] = order
        acct.open_orders += 1
        if side == BUY:
            holding.open_buy += qty
            acct.open_buy_value += price * qty
        else:
            holding.open_sell += qty
            acct.open_sell_qty += qty
        if market or tif == ON_CLOSE:
            book.auction_only[order_id] = order
        return Rested(acct.account, order_id, symbol, side, price, qty)

    def _place(self, book: Book, order: Order) -> Rested:
        """Put a new (or replaced) order in the book and count what it holds open."""
        self.orders[order.order_id] = order
        self._reserve(order)
        return self._join(book, order)

    @staticmethod
    def _join(book: Book, order: Order) -> Rested:
        """Add an order already counted open to the book."""
        (book.bids if order.side == BUY else book.asks).add(order)
        if order.market or order.tif == ON_CLOSE:
            book.auction_only[order.order_id] = order
        return Rested(
            order.account, order.order_id, book.symbol, order.side, order.price, order.leaves
        )

    @staticmethod
    def _reserve(order: Order) -> None:
        """Count an order's open size against its owner's limits (``_forget`` undoes it)."""
        owner = order.owner
        owner.open_orders += 1
        if order.side == BUY:
            order.holding.open_buy += order.leaves
            owner.open_buy_value += order.price * order.leaves
        else:
            order.holding.open_sell += order.leaves
            owner.open_sell_qty += order.leaves

    @staticmethod
    def _crosses(book: Book, side: int, price: int) -> bool:
        if side == BUY:
            best = book.asks.best_key
            return best is not None and best <= price
        best = book.bids.best_key
        return best is not None and best <= -price

    def _forget(self, order: Order) -> None:
        """Bookkeeping when a live order leaves the book without trading (the one place
        for cancels, kills, self-trade prevention and replaces that move)."""
        del self.orders[order.order_id]
        owner = order.owner
        owner.open_orders -= 1
        leaves = order.leaves
        if order.side == BUY:
            order.holding.open_buy -= leaves
            owner.open_buy_value -= order.price * leaves
        else:
            order.holding.open_sell -= leaves
            owner.open_sell_qty -= leaves

    def _fillable(self, book: Book, account: int, side: int, price: int, qty: int, stp: int) -> int:
        """How much a fill-or-kill could fill now within the dynamic band, honouring
        self-trade prevention; it stops as soon as ``qty`` is reached, so its cost is
        bounded by the order's size (and the account's own open orders it skips)."""
        if side == BUY:
            opp, maximum, minimum = book.asks, min(price, book.dyn_hi), book.dyn_lo
        else:
            opp, maximum, minimum = book.bids, -max(price, book.dyn_lo), -book.dyn_hi
        # the levels' sizes first: when even they fall short (a FOK scan of a deep
        # book of tiny orders), it is killed after one step per level, no order walk
        levels = opp.levels
        total = 0
        for key in opp.keys_in_order(maximum):
            if key < minimum:  # a better price outside the band: matching stops there
                return total
            total += levels[key].qty
            if total >= qty:
                break
        else:
            return total
        total = 0
        for order in opp.live_orders(maximum=maximum):
            if order.account == account:
                if stp == CANCEL_RESTING:
                    continue
                return total
            total += order.leaves
            if total >= qty:
                return total
        return total

    def _execute(
        self,
        book: Book,
        acct: Account,
        holding: Holding,
        order_id: int,
        side: int,
        price: int,
        qty: int,
        stp: int,
        rests: bool,
        events: list[Event],
        tif: int = GTC,
        expire_date: int = 0,
    ) -> None:
        """Match an incoming order against the book, then rest or cancel what is left.

        Trades happen at the resting order's price, best price first and oldest first
        within a price (price-time priority)."""
        symbol = book.symbol
        account = acct.account
        # the dynamic band as keys of this side (a key is the price for asks and minus
        # the price for bids): a level outside it on either side cannot trade
        if side == BUY:
            opp, limit_key, sign = book.asks, price, 1
            band_lo, band_hi = book.dyn_lo, book.dyn_hi
        else:
            opp, limit_key, sign = book.bids, -price, -1
            band_lo, band_hi = -book.dyn_hi, -book.dyn_lo
        maker_side = 3 - side
        maker_buys = maker_side == BUY
        levels = opp.levels
        remaining = qty
        cum = notional = last_px = 0
        self_cancel = paused = False
        pause_px = 0
        trade_id = self.next_trade
        while remaining:
            key = opp.best_key
            if key is None or key > limit_key:
                break
            level = levels[key]
            px = level.price
            outside = key > band_hi or key < band_lo
            queue = level.orders
            while remaining and queue:
                maker = queue[0]
                if not maker.live:
                    queue_popleft(queue)
                    continue
                if maker.account == account:  # self-trade prevention
                    if stp == CANCEL_INCOMING:
                        self_cancel = True
                        break
                    queue_popleft(queue)
                    maker.live = False
                    level.qty -= maker.leaves
                    level.count -= 1
                    self._forget(maker)
                    events.append(
                        Cancelled(
                            account,
                            maker.order_id,
                            symbol,
                            maker_side,
                            px,
                            maker.leaves,
                            BY_STP,
                            True,
                        )
                    )
                    if stp == CANCEL_BOTH:
                        self_cancel = True
                        break
                    continue
                if outside:  # its next trade would be outside the dynamic band: pause
                    paused = True
                    pause_px = px
                    break
                leaves = maker.leaves
                fill = leaves if leaves < remaining else remaining
                leaves -= fill
                maker.leaves = leaves
                remaining -= fill
                level.qty -= fill
                value = px * fill
                cum += fill
                notional += value
                events.append(
                    Fill(
                        trade_id,
                        symbol,
                        side,
                        px,
                        fill,
                        account,
                        order_id,
                        remaining,
                        maker.account,
                        maker.order_id,
                        leaves,
                    )
                )
                trade_id += 1
                if not trade_id & PROGRESS_MASK:  # a sweep of a deep book
                    self._progress()
                owner = maker.owner
                owner.cash += sign * value
                mh = maker.holding
                mh.position -= sign * fill
                if maker_buys:
                    mh.open_buy -= fill
                    owner.open_buy_value -= value
                else:
                    mh.open_sell -= fill
                    owner.open_sell_qty -= fill
                if not leaves:
                    queue_popleft(queue)
                    maker.live = False
                    level.count -= 1
                    del self.orders[maker.order_id]
                    owner.open_orders -= 1
                last_px = px
            if level.count == 0:
                opp.remove_level(key)
            if self_cancel or paused:
                break
        self.next_trade = trade_id
        if cum:
            holding.position += sign * cum
            acct.cash -= sign * notional
            book.last_price = last_px
            book.set_dynamic(last_px)
            events.append(
                Executed(account, order_id, cum, notional, (2 * notional + cum) // (2 * cum))
            )
        if paused:  # the rest would trade past the band: cancelled, and the symbol pauses
            book.paused = True
            self.paused.add(symbol)
            # it reopens around the price that hit the band (inside the static band), so
            # one resting order cannot pause the symbol again and again
            book.set_dynamic(pause_px)
            events.append(
                Cancelled(account, order_id, symbol, side, price, remaining, BY_PAUSE, False)
            )
            events.append(TradingPause(symbol, True, book.last_price, book.dyn_lo, book.dyn_hi))
            return
        if not remaining:
            return
        if rests and not self_cancel:
            events.append(
                self._rest(
                    book,
                    acct,
                    holding,
                    order_id,
                    side,
                    price,
                    remaining,
                    stp,
                    False,
                    tif,
                    expire_date,
                )  # fmt: skip
            )
        else:
            reason = BY_STP if self_cancel else BY_IOC
            events.append(
                Cancelled(account, order_id, symbol, side, price, remaining, reason, False)
            )

    def _cancel(self, cmd: CancelOrder) -> list[Event]:
        account, cl_ord_id, order_id = astuple(cmd)
        acct = self.accounts.get(account)
        if acct is None:
            return [Rejected(account, cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        seen = acct.seen  # ExactlyOnce.first and .add, inlined as in _new_order
        answers = seen.shards[hash(cl_ord_id) & SHARD_MASK]
        first = answers.get(cl_ord_id)
        if first is not None:
            return [Duplicate(account, cl_ord_id, first)]
        account = acct.account  # as in _new_order: the answer kept shares the account's
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            event = Rejected(account, cl_ord_id, Reject.UNKNOWN_ORDER, order_id)
        else:
            symbol, side, leaves = order.symbol, order.side, order.leaves
            book = self.books[symbol]
            if order.tif == ON_CLOSE and order_id in book.held:
                from_book = self._take_out(book, order)
            else:  # _take_out, inlined on a busy path
                (book.bids if side == BUY else book.asks).unlink(order)
                self._forget(order)
                from_book = True
            event = Cancelled(
                account, order_id, symbol, side, order.price, leaves, BY_USER, from_book,
                cl_ord_id,
            )  # fmt: skip
            if book.state != CONTINUOUS:
                book.auction_only.pop(order_id, None)  # as _take_out does
                events: list[Event] = [seen.add(event)]
                self._indicate(book, events)
                return events
        answers[cl_ord_id] = event
        seen.arrived(event)
        return [event]

    def _take_out(self, book: Book, order: Order) -> bool:
        """Take a live order out of the book, or out of the on-close orders held aside,
        with its bookkeeping; True when it was in the book (its size leaves the depth)."""
        if order.tif == ON_CLOSE and order.order_id in book.held:
            del book.held[order.order_id]
            order.live = False
            in_book = False
        else:
            (book.bids if order.side == BUY else book.asks).unlink(order)
            in_book = True
        # a cancelled auction-only order must not wait in the dict until the call ends
        book.auction_only.pop(order.order_id, None)
        self._forget(order)
        return in_book

    def _replace(self, cmd: ReplaceOrder) -> list[Event]:
        account = cmd.account
        cl_ord_id = cmd.cl_ord_id
        acct = self.accounts.get(account)
        if acct is None:
            return [Rejected(account, cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        first = acct.seen.first(cl_ord_id)
        if first is not None:
            return [Duplicate(account, cl_ord_id, first)]
        order = self.orders.get(cmd.order_id)
        price, qty = cmd.price, cmd.qty
        if order is None or order.account != account:
            code = Reject.UNKNOWN_ORDER
        else:
            book = self.books[order.symbol]
            held = order.tif == ON_CLOSE and order.order_id in book.held
            keep = price == order.price and qty <= order.leaves  # a size cut keeps priority
            if order.symbol in self.halted and not keep:  # a halt still allows size cuts
                code = Reject.SYMBOL_HALTED
            elif book.paused and not keep:  # and so does a pause
                code = Reject.TRADING_PAUSED
            elif qty <= 0 or qty % book.lot:
                code = Reject.BAD_QTY
            elif keep:  # only ever reduces risk: no band or limit can forbid it
                code = 0
            elif order.market:  # a market order waiting for an auction: only a size cut
                code = Reject.BAD_PRICE
            elif qty > self.max_order_qty:
                code = Reject.MAX_ORDER_SIZE
            elif price <= 0 or price % book.tick:
                code = Reject.BAD_PRICE
            elif price < book.band_lo or price > book.band_hi:
                code = Reject.PRICE_BAND
            elif (
                order.post_only
                and book.state == CONTINUOUS
                and self._crosses(book, order.side, price)
            ):
                code = Reject.POST_ONLY_WOULD_TRADE
            else:
                code = self._replace_risk(order, price, qty)
        if code:
            return [acct.seen.add(Rejected(account, cl_ord_id, code, cmd.order_id))]

        side, old_price, old_qty = order.side, order.price, order.leaves
        replaced = acct.seen.add(
            Replaced(
                account,
                cl_ord_id,
                order.order_id,
                order.symbol,
                side,
                old_price,
                old_qty,
                price,
                qty,
                keep or held,  # held aside, it keeps its place: they join by order id
            ),
        )
        events: list[Event] = [replaced]
        if held:
            self._forget(order)
            order.price, order.leaves = price, qty
            self.orders[order.order_id] = order
            self._reserve(order)
            return events
        book_side = book.bids if side == BUY else book.asks
        if keep:
            cut = old_qty - qty
            book_side.levels[book_side.sign * price].qty -= cut
            if side == BUY:
                order.holding.open_buy -= cut
                acct.open_buy_value -= price * cut
            else:
                order.holding.open_sell -= cut
                acct.open_sell_qty -= cut
            order.leaves = qty
            if book.state != CONTINUOUS:
                self._indicate(book, events)
            return events
        book_side.unlink(order)
        self._forget(order)
        if order.post_only or book.state != CONTINUOUS:  # post-only: checked not to cross
            events.append(
                self._rest(
                    book,
                    acct,
                    order.holding,
                    order.order_id,
                    side,
                    price,
                    qty,
                    order.stp,
                    order.post_only,
                    order.tif,
                    order.expire_date,
                )  # fmt: skip
            )
            self._indicate(book, events)
            return events
        self._execute(
            book, acct, order.holding, order.order_id, side, price, qty, order.stp, True, events,
            order.tif, order.expire_date,
        )  # fmt: skip
        return events

    # -- the trading day ------------------------------------------------------

    def session_state(self, symbol: str) -> int:
        """``symbol``'s Session code (CONTINUOUS until a schedule or an operator moves it)."""
        return self.books[symbol].state

    def _set_session_cmd(self, cmd: SetSession) -> list[Event]:
        """The scheduler's move of a symbol to a session state."""
        book = self.books.get(cmd.symbol)
        if book is None:
            return [Rejected(0, "", Reject.UNKNOWN_SYMBOL)]
        events: list[Event] = []
        self._move(book, cmd.state, events)
        return events

    def _end_of_day_cmd(self, cmd: EndOfDay) -> list[Event]:
        """The scheduler's end of ``cmd.trading_date``; a resend (the day already
        ended) or a date that does not move forward changes nothing."""
        if cmd.trading_date != self.trading_date or not self._next_date_ok(cmd.next_date):
            return []
        return self._end_day(cmd.next_date)

    def _next_date_ok(self, date: int) -> bool:
        return date_ok(date) and date > self.trading_date

    def _end_day(self, next_date: int) -> list[Event]:
        """End the trading day and start ``next_date``: DAY orders and GTD orders
        expiring before it are cancelled (EXPIRED) and on-close orders still waiting
        (AUCTION), in order id order; the closes are recorded; every exactly-once
        table is dropped (client order ids are unique per trading day); DayEnded last.
        Its work follows the open orders and accounts, once a day."""
        ended = self.trading_date
        self.trading_date = next_date
        if not ended:  # the first day starts: nothing to end
            return [DayEnded(0, next_date, [])]
        events: list[Event] = []
        expiring = []
        for i, o in enumerate(self.orders.values()):
            if not i % PROGRESS_EVERY:
                self._progress()
            if o.tif == DAY or o.tif == ON_CLOSE or (o.tif == GTD and o.expire_date < next_date):
                expiring.append(o)
        # nearly in order already (the dict's insertion order, but for a restore's): cheap
        expiring.sort(key=by_order_id)
        for i, order in enumerate(expiring):  # an on-close order's auction has passed
            if not i % PROGRESS_EVERY:
                self._progress()
            self._cancel_one(order, BY_AUCTION if order.tif == ON_CLOSE else BY_EXPIRY, events)
        for symbol in sorted({order.symbol for order in expiring}):
            self._indicate(self.books[symbol], events)
        for symbol, book in self.books.items():
            self.closes[symbol] = book.last_price or self.closes.get(symbol, 0)
        for acct in self.accounts.values():  # freeing a day's answers takes a while too
            self._progress()
            acct.seen = ExactlyOnce()
        closes = [ClosePrice(symbol, price) for symbol, price in sorted(self.closes.items())]
        events.append(DayEnded(ended, next_date, closes))
        return events

    def _move(self, book: Book, state: int, events: list[Event]) -> None:
        """Move ``book`` into session ``state``: first what leaving the old state does
        (leaving a call period for trading or the close runs the uncross, unless the
        symbol is halted, and cancels what auction-only orders it leaves), then
        SessionChanged, then what entering does (on-close orders join the book at the
        pre-close; a call publishes its indicative)."""
        old = book.state
        if state == old:
            return
        in_call = state in (PRE_OPEN, PRE_CLOSE)
        if old in (PRE_OPEN, PRE_CLOSE) and not in_call:
            kind = "close" if old == PRE_CLOSE else "reopen" if book.reopening else "open"
            self._leave_call(book, kind, events)
        elif old == CLOSED and state == CONTINUOUS and self._crossed(book):
            self._leave_call(book, "open", events)  # a call a halt kept from its uncross
        book.state = state
        events.append(SessionChanged(book.symbol, state, self.trading_date))
        if state == PRE_CLOSE and book.held:
            for i, order in enumerate(book.held.values()):  # in order id order: priority
                if not i % PROGRESS_EVERY:
                    self._progress()
                events.append(self._join(book, order))
            book.held.clear()
        if in_call:
            book.credit = 0
            self._indicate(book, events, exact=True)

    @staticmethod
    def _crossed(book: Book) -> bool:
        bid, ask = book.bids.best_key, book.asks.best_key
        return bid is not None and ask is not None and -bid >= ask

    def _leave_call(self, book: Book, kind: str, events: list[Event]) -> None:
        """The end of a call: the uncross, then what auction-only orders it left is
        cancelled (AUCTION)."""
        book.reopening = False
        book.indicative = auction.NO_AUCTION
        book.credit = 0
        if book.symbol not in self.halted:
            self._uncross(book, kind, events)
        left = sorted((o for o in book.auction_only.values() if o.live), key=by_order_id)
        book.auction_only.clear()
        self._cancel_all(left, BY_AUCTION, events)

    def _reference(self, book: Book) -> int:
        """The auction's reference price: the last trade, else the previous close, else
        the configured reference."""
        return book.last_price or self.closes.get(book.symbol, 0) or book.spec.reference

    def _clearing(self, book: Book) -> tuple[int, int, int, int]:
        """What an uncross of ``book`` would do now (auction.clearing), reading only the
        levels that could trade: bids at or above the best ask, asks at or below the
        best bid."""
        if not self._crossed(book):
            return auction.NO_AUCTION
        high, low = -book.bids.best_key, book.asks.best_key
        bids = self._levels(book.bids, -low)
        asks = self._levels(book.asks, high)
        return auction.clearing(bids, asks, book.tick, self._reference(book))

    @staticmethod
    def _levels(side: BookSide, maximum: int) -> list[tuple[int, int]]:
        levels = side.levels
        return [(levels[k].price, levels[k].qty) for k in side.keys_upto(maximum)]

    def _indicate(self, book: Book, events: list[Event], exact: bool = False) -> None:
        """In a call period, an Indicative event when the auction's result changed.

        Computing it reads every crossed level, so in a deep book it is amortised: each
        command that changes the book pays for INDICATIVE_LEVELS levels, and the result
        is computed again once the commands since the last time have paid for as many
        levels as the book holds (a book of up to INDICATIVE_LEVELS levels: every
        command). An adversary's orders in a deep crossed book then cost bounded work
        each, and the indicative lags by at most levels / INDICATIVE_LEVELS commands;
        the uncross itself always reads the whole book."""
        if book.state != PRE_OPEN and book.state != PRE_CLOSE:
            return
        credit = book.credit + INDICATIVE_LEVELS
        if not exact and len(book.bids.levels) + len(book.asks.levels) > credit:
            book.credit = credit
            return
        book.credit = 0
        result = self._clearing(book)
        if result != book.indicative:
            book.indicative = result
            events.append(Indicative(book.symbol, *result))

    def _uncross(self, book: Book, kind: str, events: list[Event]) -> None:
        """Execute what the auction can at its one price, in price-time priority (market
        orders first on their side); every fill is at that price, its aggressor side
        the later order's. AuctionDone first, then the fills, then each order's
        Executed summary (by order id). The price becomes the last trade."""
        price, matched, imbalance, imbalance_side = self._clearing(book)
        symbol = book.symbol
        events.append(AuctionDone(symbol, kind, price, matched, imbalance, imbalance_side))
        if not matched:
            return
        buys = self._auction_queue(book.bids, -price)
        sells = self._auction_queue(book.asks, price)
        done: dict[int, list] = {}  # order id -> [order, size executed]
        trade_id = self.next_trade
        buy = next(buys)
        sell = next(sells)
        remaining = matched
        while remaining:
            qty = min(buy.leaves, sell.leaves, remaining)
            remaining -= qty
            self._auction_fill(book, buy, qty, price)
            self._auction_fill(book, sell, qty, price)
            taker, maker = (buy, sell) if buy.order_id > sell.order_id else (sell, buy)
            events.append(
                Fill(
                    trade_id,
                    symbol,
                    taker.side,
                    price,
                    qty,
                    taker.account,
                    taker.order_id,
                    taker.leaves,
                    maker.account,
                    maker.order_id,
                    maker.leaves,
                    True,
                )
            )
            trade_id += 1
            if not trade_id % PROGRESS_EVERY:
                self._progress()
            for order in (buy, sell):
                done.setdefault(order.order_id, [order, 0])[1] += qty
            if remaining:
                if not buy.leaves:
                    buy = next(buys)
                if not sell.leaves:
                    sell = next(sells)
        self.next_trade = trade_id
        book.last_price = price
        book.set_dynamic(price)
        for i, order_id in enumerate(sorted(done)):
            if not i % PROGRESS_EVERY:
                self._progress()
            order, cum = done[order_id]
            events.append(Executed(order.account, order_id, cum, price * cum, price))

    @staticmethod
    def _auction_queue(side: BookSide, maximum: int):
        """The live orders of ``side`` up to key ``maximum`` in auction priority: best
        price first, and within a price market orders first, then time."""
        for key in side.keys_upto(maximum):
            level = side.levels.get(key)
            if level is None:
                continue
            queue = list(level.orders)
            for order in queue:
                if order.live and order.market:
                    yield order
            for order in queue:
                if order.live and not order.market:
                    yield order

    def _auction_fill(self, book: Book, order: Order, qty: int, price: int) -> None:
        """``qty`` of a resting ``order`` executed at the auction's ``price``."""
        side = order.side
        book_side = book.bids if side == BUY else book.asks
        key = book_side.sign * order.price
        level = book_side.levels[key]
        level.qty -= qty
        order.leaves -= qty
        owner = order.owner
        holding = order.holding
        if side == BUY:
            holding.open_buy -= qty
            owner.cash -= price * qty
            holding.position += qty
            owner.open_buy_value -= order.price * qty  # it held its own price open
        else:
            holding.open_sell -= qty
            owner.cash += price * qty
            holding.position -= qty
            owner.open_sell_qty -= qty
        if not order.leaves:
            order.live = False
            level.count -= 1
            del self.orders[order.order_id]
            owner.open_orders -= 1
            if not level.count:
                book_side.remove_level(key)

    # -- queries ------------------------------------------------------------

    def position(self, account: int, symbol: str) -> int:
        holding = self.accounts[account].holdings.get(symbol)
        return holding.position if holding else 0

    def _canonical_orders(self, orders) -> list:
        out = []
        for i, o in enumerate(orders):
            if not i % PROGRESS_EVERY:
                self._progress()
            out.append(_canonical_order(o))
        return out

    def state_hash(self) -> str:
        """A stable digest of the whole state, to check a replay against the live engine."""
        digest = hashlib.blake2b(msgspec.msgpack.encode(self._canonical()), digest_size=16)
        return digest.hexdigest()

    def _canonical(self) -> list:
        # a deep state takes a while to read out: its loops report progress (beats)
        accounts = []
        for _, a in sorted(self.accounts.items()):
            self._progress()
            accounts.append(
                [
                    a.account,
                    a.name,
                    a.password_hash,
                    int(a.stp),
                    a.cash,
                    a.open_orders,
                    [
                        [sym, h.position, h.open_buy, h.open_sell]
                        for sym, h in sorted(a.holdings.items())
                        if h.position or h.open_buy or h.open_sell
                    ],
                    a.seen.items(),  # arrival order is the command order: deterministic
                    a.blocked,
                    a.open_buy_value,
                    a.open_sell_qty,
                ]
            )
        # the trading day's state is added only where it differs from its default, so
        # a state from before trading days keeps the hash it was recorded with
        books = []
        for sym, book in self.books.items():
            entry = [
                sym,
                book.last_price,
                book.band_lo,
                book.band_hi,
                book.dyn_lo,
                book.dyn_hi,
                book.paused,
                self._canonical_orders(book.bids.live_orders()),
                self._canonical_orders(book.asks.live_orders()),
            ]
            if (
                book.state != CONTINUOUS
                or book.reopening
                or book.held
                or book.indicative != auction.NO_AUCTION
                or book.credit
            ):
                entry.append(
                    [
                        book.state,
                        book.reopening,
                        [_canonical_order(o) for o in book.held.values()],
                        list(book.indicative),
                        book.credit,
                    ]
                )
            books.append(entry)
        canonical = [
            accounts,
            books,
            sorted(self.orders),
            self.next_account,
            self.next_order,
            self.next_trade,
            sorted(self.halted),
        ]
        if self.trading_date or self.closes:
            canonical.append([self.trading_date, sorted(self.closes.items())])
        return canonical


def _canonical_order(o: Order) -> list:
    entry = [o.order_id, o.account, o.price, o.leaves, int(o.stp)]
    if o.tif != GTC or o.market:
        entry += [o.tif, o.expire_date, o.market]
    return entry
