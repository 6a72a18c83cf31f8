"""The gateway's guards: log-in back-off, session tokens, and rate limits.

Pure and clock-driven (every call takes ``now``), so they are tested without sockets.
None of this is replicated state: a restarted gateway forgets tokens and counters,
which fails safe (everyone logs in again; a back-off starts over at its free tries).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field


class LoginGuard:
    """Log-in back-off per (connection, name) and a throttle per name: guessing costs
    the guesser time and the gateway bounded hashing, and cannot lock the owner out.

    - A connection's ``free`` failed attempts for a name are free; each failure past
      them locks that connection out of that name for 2, 4, 8 ... s (at most ``cap``).
      Other connections are not affected, so a guesser cannot lock the owner out.
    - Past ``name_threshold`` failures for a name from all connections together (the
      count is forgotten after ``cap`` s without a failure), the name is throttled to
      ``name_rate`` hashes a second. A connection that has never failed for the name
      has priority: a guesser's connections may take a slot only while another is left
      for a clean one, so the owner's single attempt is hashed within 1/``name_rate``
      s, unless the guesser opens new connections faster than that.

    ``check`` answers 0 when an attempt may be hashed now (taking its slot), else the
    seconds to wait. The tables are bounded (the oldest entries are forgotten)."""

    def __init__(
        self,
        free: int = 3,
        cap: float = 60.0,
        name_threshold: int = 20,
        name_rate: float = 2.0,
        max_entries: int = 100_000,
    ) -> None:
        self.free = free
        self.cap = cap
        self.name_threshold = name_threshold
        self.name_rate = name_rate
        self.max_entries = max_entries
        # (connection, name) -> (failures, locked until)
        self.pairs: OrderedDict[tuple[bytes, str], tuple[int, float]] = OrderedDict()
        self.names: OrderedDict[str, NameThrottle] = OrderedDict()

    def check(self, ident: bytes, name: str, now: float) -> float:
        pair = self.pairs.get((ident, name))
        if pair is not None and now < pair[1]:
            return pair[1] - now
        throttle = self.names.get(name)
        if throttle is None or throttle.failures < self.name_threshold:
            return 0.0
        if now - throttle.last_failure >= self.cap:  # quiet long enough: forgiven
            del self.names[name]
            return 0.0
        return throttle.take(now, clean=pair is None)

    def failed(self, ident: bytes, name: str, now: float) -> None:
        key = (ident, name)
        count = self.pairs.pop(key, (0, 0.0))[0] + 1
        past = count - self.free
        until = now + min(2.0**past, self.cap) if past > 0 else 0.0
        _bounded_put(self.pairs, key, (count, until), self.max_entries)
        throttle = self.names.pop(name, None)
        if throttle is None or now - throttle.last_failure >= self.cap:
            throttle = NameThrottle(self.name_rate, now)
        throttle.failures += 1
        throttle.last_failure = now
        _bounded_put(self.names, name, throttle, self.max_entries)

    def succeeded(self, ident: bytes, name: str) -> None:
        """The connection's own count clears; the name's throttle stays while the
        failures from elsewhere go on (a success says nothing about them)."""
        self.pairs.pop((ident, name), None)


class NameThrottle:
    """A name's hashing slots once it is under attack: ``rate`` a second, two at most
    banked; a connection that failed before may take one only while another is left."""

    __slots__ = ("rate", "tokens", "stamp", "failures", "last_failure")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = 1.0  # one slot ready for a clean connection when throttling starts
        self.stamp = now
        self.failures = 0
        self.last_failure = now

    def take(self, now: float, clean: bool) -> float:
        self.tokens = min(2.0, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        need = 1.0 if clean else 2.0
        if self.tokens >= need:
            self.tokens -= 1.0
            return 0.0
        return (need - self.tokens) / self.rate


class FairShares:
    """Slots of a bounded queue (the password hashes waiting for the pool) shared
    fairly: ``total`` in all, at most ``per_name`` for one account name and
    ``per_connection`` for one connection, so a flood from one connection or against
    one name leaves room for everyone else."""

    def __init__(self, total: int, per_name: int, per_connection: int) -> None:
        self.total = total
        self.per_name = per_name
        self.per_connection = per_connection
        self.used = 0
        self.by_ident: dict[bytes, int] = {}
        self.by_name: dict[str, int] = {}

    def room(self, ident: bytes, name: str) -> bool:
        return (
            self.used < self.total
            and self.by_ident.get(ident, 0) < self.per_connection
            and self.by_name.get(name, 0) < self.per_name
        )

    def take(self, ident: bytes, name: str) -> None:
        self.used += 1
        self.by_ident[ident] = self.by_ident.get(ident, 0) + 1
        self.by_name[name] = self.by_name.get(name, 0) + 1

    def give_back(self, ident: bytes, name: str) -> None:
        self.used -= 1
        for table, key in ((self.by_ident, ident), (self.by_name, name)):
            left = table[key] - 1
            if left:
                table[key] = left
            else:
                del table[key]


def _bounded_put(table: OrderedDict, key, value, limit: int) -> None:
    if len(table) >= limit:
        table.popitem(last=False)  # forget the oldest
    table[key] = value


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
