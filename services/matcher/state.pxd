# Cython declarations for the compiled build of state.py (the .py stays the reference):
# the records become C structs, so the engine reads their fields without a lookup.
# Sizes, positions, counts and cash are C 64-bit integers: RiskLimits.check (run when an
# Engine is made) bounds every one of them inside int64, and the engine only stores a
# command's size or price after its checks passed.

cimport cython

cdef class ExactlyOnce:
    cdef public list shards
    cdef public object answers, arrived

    cpdef first(self, cl_ord_id)
    cpdef add(self, event)


@cython.final
cdef class Holding:
    cdef public long long position, open_buy, open_sell


@cython.final
cdef class Account:
    cdef public object account, name, password_hash, stp
    cdef public long long cash, open_buy_value, open_sell_qty
    cdef public Py_ssize_t open_orders
    cdef public dict holdings
    cdef public ExactlyOnce seen
    cdef public bint blocked


# made by the hundred thousand and in no reference cycle: the collector never sees one
@cython.no_gc
@cython.final
@cython.freelist(64)
cdef class Order:
    cdef public object order_id, account, symbol, price, stp
    cdef public long side
    cdef public long long leaves
    cdef public Account owner
    cdef public Holding holding
    cdef public bint post_only, live, market
    cdef public long tif
    cdef public object expire_date


@cython.locals(order=Order)
cpdef Order resting(
    order_id, account, symbol, long side, price, long long leaves, stp, Account owner,
    Holding holding, bint post_only,
)
