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

import msgspec

from services.common.bus import (
    Admin,
    CancelOrder,
    CreateAccount,
    Lead,
    NewOrder,
    Reopen,
    ReplaceOrder,
    SetPassword,
)
from services.common.config import RiskLimits, SymbolSpec
from services.common.wire import (
    ACCOUNT_NAME_RE,
    Accepted,
    AccountBlocked,
    AccountCreated,
    AdminDone,
    Cancelled,
    CancelReason,
    CashAdjusted,
    Duplicate,
    Event,
    Executed,
    Fill,
    OrdType,
    PasswordChanged,
    ReferenceSet,
    Reject,
    Rejected,
    Replaced,
    Rested,
    Side,
    Stp,
    SymbolHalted,
    Tif,
    TradingPause,
)
from services.matcher.book import Book
from services.matcher.state import SHARD_MASK, Account, Holding, Order

# Codes as plain ints, bound once: an enum lookup costs ~100 ns, and comparisons or
# list indexing with an IntEnum operand miss CPython's specialised fast paths.
BUY = int(Side.BUY)
SELL = int(Side.SELL)
LIMIT = int(OrdType.LIMIT)
GTC = int(Tif.GTC)
FOK = int(Tif.FOK)
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


class Engine:
    def __init__(self, symbols: dict[str, SymbolSpec], risk: RiskLimits | None = None) -> None:
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
        }
        self.halted: set[str] = set()  # symbols an operator halted

    def apply(self, cmd) -> list[Event]:
        """Apply one command; the returned events describe everything that changed."""
        return self._handlers[type(cmd)](cmd)

    def apply_batch(self, commands: list) -> list[list[Event]]:
        """``apply`` for each command in order; the matcher sequences whole batches,
        and one call per batch saves a Python frame per command."""
        handlers = self._handlers
        return [handlers[type(cmd)](cmd) for cmd in commands]

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
            else:
                halted = action == "halt"
                if halted:
                    self.halted.add(cmd.symbol)
                else:
                    self.halted.discard(cmd.symbol)
                events.append(SymbolHalted(cmd.symbol, halted))
                if not halted and book.paused:  # an operator's resume ends a pause too
                    events.append(self._end_pause(book))
        if code:
            return [operator.seen.add(Rejected(cmd.account, cmd.cl_ord_id, code))]
        done = operator.seen.add(AdminDone(cmd.account, cmd.cl_ord_id, action))
        return [done, *events]

    def _cancel_outside_band(self, book: Book, events: list[Event]) -> None:
        """Orders resting outside a new static band could never trade (any trade at
        their price would pause the symbol, again after each reopen): cancel them."""
        lo, hi = book.band_lo, book.band_hi
        outside = [
            o
            for side in (book.bids, book.asks)
            for o in side.live_orders()
            if not lo <= o.price <= hi
        ]
        for order in outside:
            leaves = order.leaves
            (book.bids if order.side == BUY else book.asks).unlink(order)
            self._forget(order)
            events.append(
                Cancelled(
                    order.account,
                    order.order_id,
                    book.symbol,
                    order.side,
                    order.price,
                    leaves,
                    BY_BAND,
                    True,
                )  # fmt: skip
            )

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
        mine = sorted(
            (o for o in self.orders.values() if o.account == target.account),
            key=lambda o: o.order_id,
        )
        for order in mine:
            book = self.books[order.symbol]
            (book.bids if order.side == BUY else book.asks).unlink(order)
            leaves = order.leaves
            self._forget(order)
            events.append(
                Cancelled(
                    target.account,
                    order.order_id,
                    order.symbol,
                    order.side,
                    order.price,
                    leaves,
                    BY_KILL,
                    True,
                )
            )
        return len(mine)

    # -- orders -------------------------------------------------------------

    def _new_order(self, cmd: NewOrder) -> list[Event]:
        account = cmd.account
        cl_ord_id = cmd.cl_ord_id
        try:
            acct = self.accounts[account]
        except KeyError:
            return [Rejected(account, cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        seen = acct.seen  # ExactlyOnce.first and .add, inlined on the busiest path
        answers = seen.shards[hash(cl_ord_id) & SHARD_MASK]
        first = answers.get(cl_ord_id)
        if first is not None:
            return [Duplicate(account, cl_ord_id, first)]
        symbol = cmd.symbol
        book = self.books.get(symbol)
        if book is None:
            code = Reject.UNKNOWN_SYMBOL
        else:
            code = 0
            qty = cmd.qty
            side = cmd.side
            tif = cmd.tif
            if acct.blocked or symbol in self.halted:
                code = Reject.ACCOUNT_BLOCKED if acct.blocked else Reject.SYMBOL_HALTED
            elif book.paused:
                code = Reject.TRADING_PAUSED
            elif qty <= 0 or qty % book.lot:
                code = Reject.BAD_QTY
            elif qty > self.max_order_qty:
                code = Reject.MAX_ORDER_SIZE
            elif cmd.ord_type == LIMIT:
                price = cmd.price
                if price <= 0 or price % book.tick:
                    code = Reject.BAD_PRICE
                elif price < book.band_lo or price > book.band_hi:
                    code = Reject.PRICE_BAND
                elif cmd.post_only and tif != GTC:
                    code = Reject.BAD_TIF
            elif tif == GTC or cmd.post_only:
                code = Reject.BAD_TIF
            elif cmd.price:  # a market order names no price
                code = Reject.BAD_PRICE
            else:  # market orders are collared at the edge of the static band
                price = book.band_hi if side == BUY else book.band_lo
            if not code:  # limits counting open orders as if they fill
                try:
                    holding = acct.holdings[symbol]
                except KeyError:
                    holding = acct.holdings[symbol] = Holding()
                if side == BUY:
                    if holding.position + holding.open[BUY] + qty > self.max_position:
                        code = Reject.POSITION_LIMIT
                    elif price * qty + acct.open_buy_value > acct.cash + self.credit:
                        code = Reject.INSUFFICIENT_FUNDS
                else:
                    after = holding.position - holding.open[SELL] - qty
                    if after < -self.max_position:
                        code = Reject.POSITION_LIMIT
                    elif after < -self.short_limit:
                        code = Reject.INSUFFICIENT_SHARES
                    elif acct.cash + (acct.open_sell_qty + qty) * self.max_price > self.max_cash:
                        code = Reject.VALUE_LIMIT  # its proceeds could pass the cash ceiling
                if tif == GTC and acct.open_orders >= self.max_open_orders:
                    code = code or Reject.MAX_OPEN_ORDERS
            if not code:
                if side == BUY:
                    best = book.asks.best_key
                    crosses = best is not None and best <= price
                else:
                    best = book.bids.best_key
                    crosses = best is not None and best <= -price
                post_only = cmd.post_only
                if crosses and post_only:
                    code = Reject.POST_ONLY_WOULD_TRADE
        if code:
            return [seen.add(Rejected(account, cl_ord_id, code))]

        order_id = self.next_order
        self.next_order = order_id + 1
        ack = answers[cl_ord_id] = Accepted(
            account, cl_ord_id, order_id, symbol, side, cmd.price, qty
        )
        seen.answers.append(ack)
        stp = cmd.stp or acct.stp
        if not crosses:  # nothing to match: rest at once, or cancel an IOC/FOK/market
            if tif == GTC:
                order = Order(
                    order_id, account, symbol, side, price, qty, stp, acct, holding, post_only
                )
                if side == BUY:  # BookSide.add, inlined on the busiest path
                    book_side, key = book.bids, -price
                else:
                    book_side, key = book.asks, price
                level = book_side.levels.get(key) or book_side.new_level(key, price)
                level.orders.append(order)
                level.qty += qty
                level.count += 1
                self.orders[order_id] = order
                acct.open_orders += 1
                holding.open[side] += qty
                if side == BUY:
                    acct.open_buy_value += price * qty
                else:
                    acct.open_sell_qty += qty
                return [ack, Rested(account, order_id, symbol, side, price, qty)]
            reason = BY_FOK if tif == FOK else BY_IOC
            return [ack, Cancelled(account, order_id, symbol, side, price, qty, reason, False)]
        events: list[Event] = [ack]
        if tif == FOK and self._fillable(book, account, side, price, qty, stp) < qty:
            # what it could fill within the dynamic band falls short: killed, no pause
            events.append(Cancelled(account, order_id, symbol, side, price, qty, BY_FOK, False))
            return events
        self._execute(book, acct, holding, order_id, side, price, qty, stp, tif == GTC, events)
        return events

    def _replace_risk(self, order: Order, price: int, qty: int) -> int:
        """The limits as for a new order, with the open size being replaced freed."""
        holding = order.holding
        owner = order.owner
        leaves = order.leaves
        if order.side == BUY:
            if holding.position + holding.open[BUY] - leaves + qty > self.max_position:
                return Reject.POSITION_LIMIT
            needed = owner.open_buy_value - order.price * leaves + price * qty
            if needed > owner.cash + self.credit:
                return Reject.INSUFFICIENT_FUNDS
            return 0
        after = holding.position - holding.open[SELL] + leaves - qty
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
    ) -> Rested:
        symbol = book.symbol
        order = Order(
            order_id, acct.account, symbol, side, price, qty, stp, acct, holding, post_only
        )
        (book.bids if side == BUY else book.asks).add(order)
        self.orders[order_id] = order
        acct.open_orders += 1
        holding.open[side] += qty
        if side == BUY:
            acct.open_buy_value += price * qty
        else:
            acct.open_sell_qty += qty
        return Rested(acct.account, order_id, symbol, side, price, qty)

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
        side = order.side
        order.holding.open[side] -= leaves
        if side == BUY:
            owner.open_buy_value -= order.price * leaves
        else:
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
        append = events.append
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
                    queue.popleft()
                    continue
                if maker.account == account:  # self-trade prevention
                    if stp == CANCEL_INCOMING:
                        self_cancel = True
                        break
                    queue.popleft()
                    maker.live = False
                    level.qty -= maker.leaves
                    level.count -= 1
                    self._forget(maker)
                    append(
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
                append(
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
                owner = maker.owner
                owner.cash += sign * value
                mh = maker.holding
                mh.position -= sign * fill
                mh.open[maker_side] -= fill
                if maker_buys:
                    owner.open_buy_value -= value
                else:
                    owner.open_sell_qty -= fill
                if not leaves:
                    queue.popleft()
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
            append(Executed(account, order_id, cum, notional, (2 * notional + cum) // (2 * cum)))
        if paused:  # the rest would trade past the band: cancelled, and the symbol pauses
            book.paused = True
            self.paused.add(symbol)
            # it reopens around the price that hit the band (inside the static band), so
            # one resting order cannot pause the symbol again and again
            book.set_dynamic(pause_px)
            append(Cancelled(account, order_id, symbol, side, price, remaining, BY_PAUSE, False))
            append(TradingPause(symbol, True, book.last_price, book.dyn_lo, book.dyn_hi))
            return
        if not remaining:
            return
        if rests and not self_cancel:
            append(self._rest(book, acct, holding, order_id, side, price, remaining, stp))
        else:
            reason = BY_STP if self_cancel else BY_IOC
            append(Cancelled(account, order_id, symbol, side, price, remaining, reason, False))

    def _cancel(self, cmd: CancelOrder) -> list[Event]:
        account = cmd.account
        cl_ord_id = cmd.cl_ord_id
        try:
            acct = self.accounts[account]
        except KeyError:
            return [Rejected(account, cl_ord_id, Reject.UNKNOWN_ACCOUNT)]
        seen = acct.seen
        first = seen.first(cl_ord_id)
        if first is not None:
            return [Duplicate(account, cl_ord_id, first)]
        order_id = cmd.order_id
        order = self.orders.get(order_id)
        if order is None or order.account != account:
            event = Rejected(account, cl_ord_id, Reject.UNKNOWN_ORDER, order_id)
        else:
            symbol, side, leaves = order.symbol, order.side, order.leaves
            book = self.books[symbol]
            (book.bids if side == BUY else book.asks).unlink(order)
            self._forget(order)
            event = Cancelled(
                account, order_id, symbol, side, order.price, leaves, BY_USER, True, cl_ord_id
            )
        return [seen.add(event)]

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
            keep = price == order.price and qty <= order.leaves  # a size cut keeps priority
            if order.symbol in self.halted and not keep:  # a halt still allows size cuts
                code = Reject.SYMBOL_HALTED
            elif book.paused and not keep:  # and so does a pause
                code = Reject.TRADING_PAUSED
            elif qty <= 0 or qty % book.lot:
                code = Reject.BAD_QTY
            elif keep:  # only ever reduces risk: no band or limit can forbid it
                code = 0
            elif qty > self.max_order_qty:
                code = Reject.MAX_ORDER_SIZE
            elif price <= 0 or price % book.tick:
                code = Reject.BAD_PRICE
            elif price < book.band_lo or price > book.band_hi:
                code = Reject.PRICE_BAND
            elif order.post_only and self._crosses(book, order.side, price):
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
                keep,
            ),
        )
        events: list[Event] = [replaced]
        book_side = book.bids if side == BUY else book.asks
        if keep:
            cut = old_qty - qty
            book_side.levels[book_side.sign * price].qty -= cut
            order.holding.open[side] -= cut
            if side == BUY:
                acct.open_buy_value -= price * cut
            else:
                acct.open_sell_qty -= cut
            order.leaves = qty
            return events
        book_side.unlink(order)
        self._forget(order)
        if order.post_only:  # checked above: it does not cross
            events.append(
                self._rest(
                    book, acct, order.holding, order.order_id, side, price, qty, order.stp, True
                )
            )
            return events
        self._execute(
            book, acct, order.holding, order.order_id, side, price, qty, order.stp, True, events
        )
        return events

    # -- queries ------------------------------------------------------------

    def position(self, account: int, symbol: str) -> int:
        holding = self.accounts[account].holdings.get(symbol)
        return holding.position if holding else 0

    def state_hash(self) -> str:
        """A stable digest of the whole state, to check a replay against the live engine."""
        digest = hashlib.blake2b(msgspec.msgpack.encode(self._canonical()), digest_size=16)
        return digest.hexdigest()

    def _canonical(self) -> list:
        accounts = [
            [
                a.account,
                a.name,
                a.password_hash,
                int(a.stp),
                a.cash,
                a.open_orders,
                [
                    [sym, h.position, h.open[BUY], h.open[SELL]]
                    for sym, h in sorted(a.holdings.items())
                    if h.position or h.open[BUY] or h.open[SELL]
                ],
                a.seen.items(),  # arrival order is the command order: deterministic
                a.blocked,
                a.open_buy_value,
                a.open_sell_qty,
            ]
            for _, a in sorted(self.accounts.items())
        ]
        books = [
            [
                sym,
                book.last_price,
                book.band_lo,
                book.band_hi,
                book.dyn_lo,
                book.dyn_hi,
                book.paused,
                [
                    [o.order_id, o.account, o.price, o.leaves, int(o.stp)]
                    for o in book.bids.live_orders()
                ],
                [
                    [o.order_id, o.account, o.price, o.leaves, int(o.stp)]
                    for o in book.asks.live_orders()
                ],
            ]
            for sym, book in self.books.items()
        ]
        return [
            accounts,
            books,
            sorted(self.orders),
            self.next_account,
            self.next_order,
            self.next_trade,
            sorted(self.halted),
        ]
