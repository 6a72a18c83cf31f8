"""The gateway's guards without sockets (services/gateway/security.py, sessions.py): the
token bucket, the log-in back-off, and session tokens that stay bounded however often
an account logs in."""

from __future__ import annotations

from services.common.protocol import LoggedIn, Reject
from services.gateway import sessions
from services.gateway.security import LoginGuard, TokenBucket
from services.gateway.sessions import Limits, SessionTable


def test_token_bucket_allows_bursts_then_the_rate():
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(30)) == 20
    assert not bucket.take(0.05)  # half a token back
    assert bucket.take(0.1)  # a whole one
    assert sum(bucket.take(100.0) for _ in range(30)) == 20  # refills only to the burst


def test_login_backoff_doubles_past_the_free_tries_and_is_capped():
    guard = LoginGuard(free=2, cap=5.0, max_names=3)
    for _ in range(2):
        guard.failed("alice", 0.0)
        assert guard.allowed("alice", 0.0)
    guard.failed("alice", 0.0)  # past the free tries: locked 2 s
    assert not guard.allowed("alice", 1.9) and guard.allowed("alice", 2.0)
    guard.failed("alice", 2.0)  # 4 s
    assert not guard.allowed("alice", 5.9) and guard.allowed("alice", 6.0)
    guard.failed("alice", 6.0)  # 8 s, capped at 5
    assert guard.allowed("alice", 11.0)
    assert guard.allowed("bob", 0.0)  # per name
    guard.succeeded("alice")
    assert guard.failures.get("alice") is None
    for name in ("a", "b", "c", "d"):  # bounded: the oldest name is forgotten
        guard.failed(name, 0.0)
    assert len(guard.failures) == 3 and "a" not in guard.failures


def table(**limits) -> SessionTable:
    return SessionTable(Limits(**limits), frozenset({"ops"}))


def test_logging_in_again_on_a_connection_replaces_its_token():
    sessions = table(max_sessions_per_account=4)
    first = sessions.open(b"c1", 1, "alice", 0.0)
    assert isinstance(first, LoggedIn) and not first.operator
    for i in range(1000):  # a client logging in in a loop
        last = sessions.open(b"c1", 1, "alice", float(i))
    assert sessions.tokens.of_account(1) == [last.token]
    assert sessions.resume(b"c2", first.token, 1.0) == Reject.BAD_TOKEN
    assert sessions.resume(b"c2", last.token, 1.0).account == 1
    assert len(sessions.tokens.by_token) == 1


def test_tokens_per_account_are_bounded_and_live_ones_are_kept():
    sessions = table(max_sessions_per_account=3, token_ttl_s=100)
    live = sessions.open(b"keep", 1, "alice", 0.0).token
    idle = []
    for i in range(10):  # connections that log in and go silent leave resumable tokens
        idle.append(sessions.open(b"c%d" % i, 1, "alice", 0.0).token)
        sessions.by_ident[b"keep"].last_seen = 10.0 + i  # this one keeps talking
        sessions.expire(now=10.0 + i, idle_s=5.0)
    tokens = sessions.tokens.of_account(1)
    assert len(tokens) <= 3 and live in tokens and idle[-1] in tokens
    assert sessions.resume(b"back", idle[0], 20.0) == Reject.BAD_TOKEN  # the oldest went
    assert sessions.resume(b"back", idle[-1], 20.0).account == 1
    assert sessions.open(b"ops", 2, "ops", 0.0).operator


def test_sessions_per_account_and_log_out_everywhere():
    sessions = table(max_sessions_per_account=2)
    token = sessions.open(b"a", 1, "alice", 0.0).token
    assert sessions.resume(b"b", token, 0.0).token == token
    assert sessions.open(b"c", 1, "alice", 0.0) == Reject.TOO_MANY_SESSIONS
    assert sorted(sessions.log_out(b"a")) == [b"a", b"b"]
    assert sessions.get(b"b") is None and sessions.tokens.of_account(1) == []
    assert isinstance(sessions.open(b"c", 1, "alice", 0.0), LoggedIn)


def test_connections_not_logged_in_have_their_own_bounded_buckets():
    table = SessionTable(Limits(anonymous_rate=10), frozenset())
    now = 100.0
    assert all(table.allow_anonymous(b"flood", now) for _ in range(20))  # a 2 s burst
    assert not table.allow_anonymous(b"flood", now)
    assert table.allow_anonymous(b"other", now)  # another connection is not charged
    assert table.allow_anonymous(b"flood", now + 0.15)  # a request per 1/rate s again
    for i in range(sessions.ANONYMOUS_KEPT + 5):  # many new connections: memory is bounded
        table.allow_anonymous(i.to_bytes(4, "big"), now)
    assert len(table.anonymous) == sessions.ANONYMOUS_KEPT
    assert b"flood" not in table.anonymous  # the oldest went first
