"""The gateway's guards: log-in back-off, session tokens, and rate limits.

Pure and clock-driven (every call takes ``now``), so they are tested without sockets.
None of this is replicated state: a restarted gateway forgets tokens and counters,
which fails safe (everyone logs in again; a back-off starts over at its free tries).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


class TokenBucket:
    """``rate`` requests a second on average, bursts up to ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> bool:
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens < 1:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1
        return True


class LoginGuard:
    """Exponential back-off per account name after ``free`` failed log-ins: the n-th
    failure past them locks the name for 2**n seconds (at most ``cap``). Attempts in
    a lock are refused before any hashing, so guessing costs the guesser time and the
    gateway nothing. A success clears the count."""

    def __init__(self, free: int = 3, cap: float = 60.0, max_names: int = 100_000) -> None:
        self.free = free
        self.cap = cap
        self.max_names = max_names
        self.failures: dict[str, tuple[int, float]] = {}  # name -> (count, locked until)

    def allowed(self, name: str, now: float) -> bool:
        entry = self.failures.get(name)
        return entry is None or now >= entry[1]

    def failed(self, name: str, now: float) -> None:
        count = self.failures.get(name, (0, 0.0))[0] + 1
        past = count - self.free
        until = now + min(2.0**past, self.cap) if past > 0 else 0.0
        if name not in self.failures and len(self.failures) >= self.max_names:
            self.failures.pop(next(iter(self.failures)))  # bounded: forget the oldest
        self.failures[name] = (count, until)

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)


@dataclass
class Token:
    account: int
    name: str
    expires: float
    idents: set[bytes] = field(default_factory=set)  # connections using it


class Tokens:
    """Random bearer tokens naming a logged-in session, valid for ``ttl`` seconds; at
    most ``per_account`` per account (issuing one past it revokes the oldest that no
    connection uses), so repeated log-ins cannot grow the table."""

    def __init__(self, ttl: float, per_account: int = 16) -> None:
        self.ttl = ttl
        self.per_account = per_account
        self.by_token: dict[str, Token] = {}
        self.by_account: dict[int, dict[str, None]] = {}  # in the order issued

    def issue(self, account: int, name: str, now: float) -> str:
        mine = self.by_account.setdefault(account, {})
        for old in [t for t in mine if not self.by_token[t].idents]:
            if len(mine) < self.per_account:
                break
            self.revoke(old)
        token = secrets.token_hex(32)
        self.by_token[token] = Token(account, name, now + self.ttl)
        mine[token] = None
        return token

    def get(self, token: str, now: float) -> Token | None:
        found = self.by_token.get(token)
        if found is None or now >= found.expires:
            return None
        return found

    def revoke(self, token: str) -> Token | None:
        found = self.by_token.pop(token, None)
        if found is not None:
            self.by_account.get(found.account, {}).pop(token, None)
        return found

    def of_account(self, account: int) -> list[str]:
        return list(self.by_account.get(account, ()))

    def expired(self, now: float) -> list[str]:
        return [t for t, v in self.by_token.items() if now >= v.expires]
