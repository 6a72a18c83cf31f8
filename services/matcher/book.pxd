# Cython declarations for the compiled build of book.py (the .py stays the reference).

cimport cython

from services.matcher.state cimport Order

@cython.final
cdef class Level:
    cdef public object price, orders
    cdef public long long qty
    cdef public Py_ssize_t count


@cython.final
cdef class BookSide:
    cdef public object sign, best_key
    cdef public dict levels
    cdef public list heap

    cpdef add(self, Order order)
    cpdef Level new_level(self, key, price)
    cpdef remove_level(self, key)
    @cython.locals(level=Level, o=Order, count=Py_ssize_t)
    cpdef unlink(self, Order order)


@cython.final
cdef class Book:
    cdef public object spec, symbol, tick, lot
    cdef public BookSide bids, asks
    cdef public object last_price, band_lo, band_hi, dyn_lo, dyn_hi, max_price
    cdef public object band_bps, dynamic_bps
    cdef public bint paused, reopening
    cdef public long state
    cdef public dict held, auction_only
    cdef public tuple indicative
    cdef public long credit

    cpdef set_band(self, reference)
    @cython.locals(
        lo="long long", hi="long long", bps="long long", half="long long",
        dyn_lo="long long", dyn_hi="long long",
    )
    cpdef set_dynamic(self, long long price)
