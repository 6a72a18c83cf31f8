# Cython declarations for the compiled build of state.py (the .py stays the reference):
# the records become C structs, so the engine reads their fields without a lookup.

cimport cython

cdef class ExactlyOnce:
    cdef public list shards
    cdef public object answers

    cpdef first(self, cl_ord_id)
    cpdef add(self, event)


cdef class Holding:
    cdef public object position
    cdef public list open


cdef class Account:
    cdef public object account, name, password_hash, stp, cash, open_orders
    cdef public dict holdings
    cdef public ExactlyOnce seen
    cdef public bint blocked
    cdef public object open_buy_value, open_sell_qty


# made by the hundred thousand and in no reference cycle: the collector never sees one
@cython.no_gc
@cython.final
cdef class Order:
    cdef public object order_id, account, symbol, side, price, leaves, stp
    cdef public Account owner
    cdef public Holding holding
    cdef public bint post_only, live, market
    cdef public long tif
    cdef public object expire_date
