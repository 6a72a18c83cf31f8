"""The matcher: the pure engine and the single-threaded service that drives it."""
