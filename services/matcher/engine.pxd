# Cython declarations for the compiled build of engine.py (the .py stays the reference):
# typed locals turn the records' field reads and writes into C struct accesses, and the
# sizes and prices of an order that passed its checks into C 64-bit integers (the
# wire's own values stay Python ints until then: they may not fit).

cimport cython

from services.matcher.book cimport Book, BookSide, Level
from services.matcher.state cimport Account, ExactlyOnce, Holding, Order, resting

# the codes as C constants: comparing them with the typed locals below is a C compare
cdef long BUY, SELL, LIMIT, GTC, IOC, FOK, DAY, GTD, ON_CLOSE
cdef long CLOSED, PRE_OPEN, CONTINUOUS, PRE_CLOSE
cdef Py_ssize_t SHARD_MASK
cdef long long PROGRESS_MASK


@cython.final
cdef class Engine:
    cdef public object risk, max_order_qty
    cdef public long long max_position, max_open_orders, short_limit, credit, max_price
    cdef public long long max_cash
    cdef public dict books, accounts, names, orders, _handlers
    cdef public set paused, halted
    cdef public object next_account, next_order, next_trade, trading_date
    cdef public dict closes
    cdef public object progress

    cpdef list apply(self, cmd)

    @cython.locals(
        acct=Account, seen=ExactlyOnce, answers=dict, book=Book, holding=Holding,
        book_side=BookSide, level=Level, order=Order, side=long, tif=long, ord_type=long,
        session=long, rests=bint, waits=bint, crosses=bint, post_only=bint,
        size="long long", px="long long", after="long long",
    )
    cpdef list _new_order(self, cmd)

    @cython.locals(
        acct=Account, seen=ExactlyOnce, answers=dict, book=Book, order=Order, side=long,
    )
    cpdef list _cancel(self, cmd)

    @cython.locals(owner=Account, leaves="long long")
    cpdef _forget(self, Order order)

    @cython.locals(
        opp=BookSide, levels=dict, level=Level, owner=Account, mh=Holding, queue=object,
        maker=Order, maker_side=long, maker_buys=bint, outside=bint, self_cancel=bint,
        paused=bint, sign=long, remaining="long long", cum="long long",
        notional="long long", last_px="long long", pause_px="long long", px="long long",
        leaves="long long", fill="long long", value="long long", trade_id="long long",
    )
    cpdef _execute(
        self, Book book, Account acct, Holding holding, order_id, long side,
        long long price, long long qty, stp, bint rests, list events, tif=*,
        expire_date=*,
    )

    cpdef _rest(
        self, Book book, Account acct, Holding holding, order_id, side, price, qty, stp,
        post_only=*, tif=*, expire_date=*, market=*,
    )
