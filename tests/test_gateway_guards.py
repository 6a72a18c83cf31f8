"""The gateway's guards without sockets (services/gateway/security.py, sessions.py): the
token bucket, the log-in back-off, and session tokens that stay bounded however often
an account logs in."""

from __future__ import annotations

from services.common.bucket import TokenBucket
from services.common.config import Security
from services.common.wire import LoggedIn, Reject
from services.gateway import sessions
from services.gateway.security import LoginGuard
from services.gateway.sessions import SessionTable


def test_token_bucket_allows_bursts_then_the_rate():
    bucket = TokenBucket(rate=10, burst=20, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(30)) == 20
    assert not bucket.take(0.05)  # half a token back
    assert bucket.take(0.1)  # a whole one
    assert sum(bucket.take(100.0) for _ in range(30)) == 20  # refills only to the burst


def test_login_backoff_per_connection_doubles_past_the_free_tries_and_is_capped():
    guard = LoginGuard(free=2, cap=5.0, name_threshold=1000, max_entries=3)
    for _ in range(2):
        guard.failed(b"c1", "alice", 0.0)
        assert guard.check(b"c1", "alice", 0.0) == 0
    guard.failed(b"c1", "alice", 0.0)  # past the free tries: locked 2 s
    assert guard.check(b"c1", "alice", 1.5) == 0.5 and guard.check(b"c1", "alice", 2.0) == 0
    guard.failed(b"c1", "alice", 2.0)  # 4 s
    assert guard.check(b"c1", "alice", 5.9) > 0 and guard.check(b"c1", "alice", 6.0) == 0
    guard.failed(b"c1", "alice", 6.0)  # 8 s, capped at 5
    assert guard.check(b"c1", "alice", 11.0) == 0
    # the lock is this connection's for this name: not the owner's, not another name's
    assert guard.check(b"owner", "alice", 6.0) == 0
    assert guard.check(b"c1", "bob", 6.0) == 0
    guard.succeeded(b"c1", "alice")
    assert (b"c1", "alice") not in guard.pairs
    for name in ("a", "b", "c", "d"):  # bounded: the oldest entry is forgotten
        guard.failed(b"c2", name, 0.0)
    assert len(guard.pairs) == 3 and (b"c2", "a") not in guard.pairs
    assert len(guard.names) == 3 and "a" not in guard.names


def test_a_name_under_attack_is_throttled_but_its_owner_goes_first():
    """Past the threshold a name gets ``name_rate`` hashes a second; guessers'
    connections (they failed before) may take one only while another is left, so a
    connection that never failed is hashed at once. (The per-connection back-off is
    lifted here, ``free`` huge, to see the name's throttle alone.)"""
    guard = LoginGuard(free=10**6, cap=60.0, name_threshold=10, name_rate=2.0)
    now = 100.0
    guessers = [b"g%d" % i for i in range(10)]
    for g in guessers:  # ten guessers fail once each: the name is throttled
        guard.failed(g, "victim", now)
    assert guard.check(b"g0", "victim", now) == 0.5  # guessers wait for two slots banked
    assert guard.check(b"owner", "victim", now) == 0  # the owner takes the one kept
    assert guard.check(b"owner2", "victim", now) == 0.5  # then the name's rate applies
    assert guard.check(b"other", "bob", now) == 0  # other names are not throttled
    hashed, newcomers_waited, t = 0, 0, now
    for step in range(1, 1001):  # for 10 s the guessers ask every 10 ms ...
        t = now + step / 100
        for g in guessers:
            if guard.check(g, "victim", t) == 0:
                hashed += 1
                guard.failed(g, "victim", t)
        if step % 100 == 50:  # ... and every second a newcomer asks once
            newcomers_waited += guard.check(b"n%d" % step, "victim", t) > 0
    assert 0 < hashed <= 2 * 10  # the name's rate, however hard the guessers push
    assert newcomers_waited == 0  # a connection that never failed found its slot at once
    assert 0 < guard.check(b"g1", "victim", t) <= 1.0  # guessers are told how long to wait
    assert guard.check(b"g1", "victim", t + 60) == 0  # quiet for ``cap`` s: forgiven
    assert "victim" not in guard.names


def table(**limits) -> SessionTable:
    return SessionTable(Security(**limits), frozenset({"ops"}))


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
    table = SessionTable(Security(anonymous_rate=10), frozenset())
    now = 100.0
    assert all(table.allow_anonymous(b"flood", now) for _ in range(20))  # a 2 s burst
    assert not table.allow_anonymous(b"flood", now)
    # requests that only earn NOT_LOGGED_IN cannot use up the way to log in
    assert all(table.allow_anonymous(b"flood", now, session_request=True) for _ in range(20))
    assert not table.allow_anonymous(b"flood", now, session_request=True)
    assert table.allow_anonymous(b"other", now)  # another connection is not charged
    assert table.allow_anonymous(b"flood", now + 0.15)  # a request per 1/rate s again
    for i in range(sessions.ANONYMOUS_KEPT + 5):  # many new connections: memory is bounded
        table.allow_anonymous(i.to_bytes(4, "big"), now)
    assert len(table.anonymous) == sessions.ANONYMOUS_KEPT
    assert b"flood" not in table.anonymous  # the oldest went first
