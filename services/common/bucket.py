"""A token bucket: the one rate limiter the gateway and marketdata share."""

from __future__ import annotations


class TokenBucket:
    """``rate`` requests a second on average, bursts up to ``burst``. Pure and
    clock-driven (``take`` is given ``now``), so tests need no sleeping."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        """One token if there is one (after refilling for the time since the last)."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True
