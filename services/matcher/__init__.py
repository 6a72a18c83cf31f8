"""The matcher: the pure engine and the single-threaded service that drives it."""

from services.matcher.compiled import choose

choose()  # the compiled engine if `make` built it from these sources, else the pure one
