"""Who is logged in on which connection: sessions, their tokens and their limits.

A session belongs to a connection (a ROUTER identity) and names an account. Log-in
issues a token; ``resume`` attaches another connection to the same token. Sessions
end on log-out (the token with them), on silence (the connection only: the token
can resume), when the token expires, or when the password changes (every other).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from services.common.bucket import TokenBucket
from services.common.config import Security
from services.common.wire import LoggedIn, Reject
from services.gateway.security import LoginGuard, Tokens

ANONYMOUS_KEPT = 10_000  # buckets of connections not logged in; past it the oldest goes


@dataclass
class Session:
    account: int
    name: str
    token: str
    last_seen: float
    bucket: TokenBucket
    operator: bool = False
    told_limited: float = -1.0  # when it was last answered RATE_LIMITED


class SessionTable:
    def __init__(self, limits: Security, operators: frozenset[str]) -> None:
        self.limits = limits
        self.operators = operators
        self.by_ident: dict[bytes, Session] = {}
        self.by_account: dict[int, set[bytes]] = {}
        self.tokens = Tokens(limits.token_ttl_s, limits.max_sessions_per_account)
        self.guard = LoginGuard(
            limits.login_free_tries,
            limits.login_max_backoff_s,
            limits.login_name_threshold,
            limits.login_name_rate,
        )
        self.account_buckets: dict[int, TokenBucket] = {}
        # connections with no session, oldest first: bounded, so a stream of new
        # connections costs memory only up to ANONYMOUS_KEPT pairs of buckets (one for
        # sign-up, log-in, resume and ping, one for everything else)
        self.anonymous: OrderedDict[bytes, tuple[TokenBucket, TokenBucket]] = OrderedDict()

    def get(self, ident: bytes) -> Session | None:
        return self.by_ident.get(ident)

    def open(
        self, ident: bytes, account: int, name: str, now: float, token: str | None = None
    ) -> LoggedIn | int:
        """Log ``ident`` in (with a new token, or the one it resumes); a reject code if
        the account already has its maximum of sessions."""
        before = self.drop(ident)
        if before is not None and token is None:  # a log-in replaces this connection's
            held = self.tokens.by_token.get(before.token)  # session: its token goes too,
            if held is not None and not held.idents:  # unless another connection uses it
                self.tokens.revoke(before.token)
        idents = self.by_account.setdefault(account, set())
        if len(idents) >= self.limits.max_sessions_per_account:
            return Reject.TOO_MANY_SESSIONS
        token = token or self.tokens.issue(account, name, now)
        rate = self.limits.session_rate
        operator = name in self.operators
        self.by_ident[ident] = Session(
            account, name, token, now, TokenBucket(rate, 2 * rate, now), operator
        )
        idents.add(ident)
        self.tokens.by_token[token].idents.add(ident)
        expires = int(self.tokens.by_token[token].expires - now)
        return LoggedIn(account, name, token, expires, operator)

    def resume(self, ident: bytes, token: str, now: float) -> LoggedIn | int:
        found = self.tokens.get(token, now)
        if found is None:
            return Reject.BAD_TOKEN
        return self.open(ident, found.account, found.name, now, token)

    def drop(self, ident: bytes) -> Session | None:
        """End the connection's session (its token stays valid for other connections)."""
        session = self.by_ident.pop(ident, None)
        if session is not None:
            self.by_account.get(session.account, set()).discard(ident)
            token = self.tokens.by_token.get(session.token)
            if token is not None:
                token.idents.discard(ident)
        return session

    def log_out(self, ident: bytes) -> list[bytes]:
        """End the session and its token on every connection; the idents ended."""
        session = self.by_ident.get(ident)
        if session is None:
            return []
        return self._end_token(session.token)

    def _end_token(self, token: str) -> list[bytes]:
        found = self.tokens.revoke(token)
        ended = sorted(found.idents) if found else []
        for ident in ended:
            self.drop(ident)
        return ended

    def end_others(self, account: int, keep: bytes | None) -> list[bytes]:
        """A password changed: every session and token of ``account`` but ``keep``'s."""
        kept = self.by_ident.get(keep) if keep is not None else None
        ended: list[bytes] = []
        for token in self.tokens.of_account(account):
            if kept is None or token != kept.token:
                ended += self._end_token(token)
        return ended

    def allow(self, session: Session, now: float) -> bool:
        """Both the session's and its account's token bucket have room."""
        bucket = self.account_buckets.get(session.account)
        if bucket is None:
            rate = self.limits.account_rate
            bucket = self.account_buckets[session.account] = TokenBucket(rate, 2 * rate, now)
        return session.bucket.take(now) and bucket.take(now)

    def allow_anonymous(self, ident: bytes, now: float, session_request: bool = False) -> bool:
        """A connection that is not logged in has its own token buckets: sign-up,
        log-in and pings need a few requests, and a flood from one is refused before it
        is even decoded, so it cannot crowd out everyone else's orders. Session requests
        (``session_request``: sign-up, log-in, resume, ping) have a bucket of their own,
        so requests that only earn NOT_LOGGED_IN cannot use up the way to log in."""
        buckets = self.anonymous.get(ident)
        if buckets is None:
            if len(self.anonymous) >= ANONYMOUS_KEPT:
                self.anonymous.popitem(last=False)
            rate = self.limits.anonymous_rate
            buckets = self.anonymous[ident] = (
                TokenBucket(rate, 2 * rate, now),
                TokenBucket(rate, 2 * rate, now),
            )
        return buckets[0 if session_request else 1].take(now)

    def expire(self, now: float, idle_s: float) -> list[tuple[bytes, str]]:
        """Silent connections lose their session; expired tokens end theirs. Each
        connection whose session ended, with why (for the notice it is sent)."""
        idle = [i for i, s in self.by_ident.items() if now - s.last_seen > idle_s]
        for ident in idle:
            self.drop(ident)
        ended = [(i, f"no traffic for {idle_s:g} s (ping to keep it)") for i in idle]
        for token in self.tokens.expired(now):
            ended += [(i, "its token expired") for i in self._end_token(token)]
        return ended
