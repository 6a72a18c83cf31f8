"""The gateway's core without sockets: requests in, replies and commands out; the
committed records (made by the real engine) in, each session's reports out."""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future

import pytest

from services.common import config
from services.common.bus import (
    CancelOrder,
    CreateAccount,
    MatcherBusy,
    NewOrder,
    Record,
    Reopen,
    SetPassword,
)
from services.common.codec import encode, reply_decoder
from services.common.metrics import Metrics
from services.common.wire import (
    Accepted,
    AccountCreated,
    CancelRequest,
    ChangePassword,
    Fill,
    GetPositions,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Notice,
    PasswordChanged,
    Ping,
    PlaceOrder,
    Pong,
    Positions,
    Reject,
    Report,
    Reports,
    RequestRejected,
    Side,
    Signup,
)
from services.gateway.accounts import AccountView
from services.gateway.core import (
    RATE_LIMITED_SESSION,
    SIGNUP,
    GatewayCore,
    InFlight,
    key_of,
)
from services.matcher.engine import Engine
from tests.fakes import Log

PASSWORD = "Secret.pw1"
PRICE = 1_700_000  # AAPL's reference in the default config


class Pool:
    """Hashes at once, on the caller's thread."""

    def __init__(self) -> None:
        self.tended: list[int] = []

    def submit(self, now: float, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def tend(self, now: float, pending: int) -> None:
        self.tended.append(pending)

    def shutdown(self) -> None:
        pass


class Gateway:
    """A GatewayCore, its replies by connection, and a matcher (the real engine) that
    commits what it forwards when told to."""

    def __init__(self, gateway: dict | None = None, security: dict | None = None) -> None:
        cfg = config.load(None)
        cfg = dataclasses.replace(
            cfg,
            gateway=dataclasses.replace(cfg.gateway, **(gateway or {})),
            security=dataclasses.replace(cfg.security, **(security or {})),
        )
        self.replies: dict[bytes, list] = {}
        self.full: set[bytes] = set()  # connections whose queue is full
        self.core = GatewayCore(
            cfg, AccountView(), Pool(), self.out, Log(), Metrics("gateway"), lambda: self.now
        )
        self.engine = Engine(cfg.symbols, cfg.risk)
        self.seq = 0
        self.now = 0.0

    def out(self, ident: bytes, frame: bytes) -> bool | None:
        if ident in self.full:
            return False
        self.replies.setdefault(ident, []).append(reply_decoder.decode(frame))
        return True

    def send(self, ident: bytes, req) -> None:
        self.core.frame([ident, encode(req)], 2, self.now)

    def turn(self) -> list:
        """The end of a loop turn: finished hashes acted on, the outbox taken."""
        self.core.finish_hashing(self.now)
        return self.core.take_outbox()

    def commit(self, commands: list) -> list[Record]:
        records = []
        for cmd in commands:
            self.seq += 1
            records.append(Record(self.seq, 1, cmd, self.engine.apply(cmd)))
        self.core.committed(records)
        return records

    def taken(self, ident: bytes) -> list:
        return self.replies.pop(ident, [])

    def account(self, ident: bytes, name: str) -> int:
        """Sign ``name`` up and log it in on ``ident``; its account number."""
        self.send(ident, Signup(name, PASSWORD))
        self.commit(self.turn())
        self.send(ident, Login(name, PASSWORD))
        self.turn()
        [logged_in] = [r for r in self.taken(ident) if isinstance(r, LoggedIn)]
        return logged_in.account


def order(cl_ord_id: str, side=Side.BUY, qty: int = 10, price: int = PRICE) -> PlaceOrder:
    return PlaceOrder(cl_ord_id, "AAPL", side, qty, price)


def test_one_key_type_for_every_command_in_flight():
    assert key_of(CreateAccount("ann", "h")) == (SIGNUP, "ann")
    assert key_of(NewOrder(3, "c1", "AAPL", Side.BUY, 1, PRICE)) == (3, "c1")
    assert key_of(SetPassword(3, "p1", "h")) == (3, "p1")
    assert key_of(Reopen("AAPL")) is None  # the matcher's own: nobody to answer
    table = InFlight(limit=3, per_account=1)
    table.add((SIGNUP, "ann"), b"x", CreateAccount("ann", "h"))
    table.add((SIGNUP, "bob"), b"y", CreateAccount("bob", "h"))
    assert table.held == {}  # sign-ups count only in all
    table.add((3, "c1"), b"z", "cmd")
    assert table.full() and table.account_full(3) and not table.account_full(4)
    assert table.commands() == [CreateAccount("ann", "h"), CreateAccount("bob", "h"), "cmd"]
    assert table.take((3, "c1")) == (b"z", "cmd") and table.held == {}
    assert table.take((3, "c1")) is None


def test_a_sign_up_goes_in_flight_and_is_answered_when_committed():
    gw = Gateway()
    gw.send(b"a", Signup("ann", PASSWORD))
    gw.send(b"b", Signup("ann", PASSWORD))  # the same name from elsewhere, meanwhile
    commands = gw.turn()
    assert [type(c) for c in commands] == [CreateAccount]
    assert (SIGNUP, "ann") in gw.core.inflight
    [taken] = gw.taken(b"b")
    assert taken.code == Reject.NAME_TAKEN and taken.ref == "ann"
    gw.commit(commands)
    [report] = gw.taken(b"a")
    assert isinstance(report, Report) and type(report.events[0]) is AccountCreated
    assert len(gw.core.inflight) == 0
    gw.send(b"c", Signup("ann", PASSWORD))  # now the view has it
    assert gw.taken(b"c")[0].code == Reject.NAME_TAKEN


def test_requests_before_log_in_are_refused_and_pings_answered():
    gw = Gateway()
    gw.send(b"a", order("c1"))
    gw.send(b"a", Ping(7))
    refused, pong = gw.taken(b"a")
    assert refused.code == Reject.NOT_LOGGED_IN and pong == Pong(7)
    gw.core.frame([b"a", b"x", b"y"], 3, 0.0)
    gw.core.frame([b"a", b"\xc1"], 2, 0.0)
    assert [r.code for r in gw.taken(b"a")] == [Reject.MALFORMED, Reject.MALFORMED]
    gw.send(b"a", Login("nobody", PASSWORD))
    gw.turn()
    assert gw.taken(b"a")[0].code == Reject.BAD_CREDENTIALS


def test_orders_are_forwarded_once_and_reported_to_every_session_of_both_sides():
    gw = Gateway()
    ann = gw.account(b"ann-1", "ann")
    bob = gw.account(b"bob-1", "bob")
    gw.send(b"ann-2", Login("ann", PASSWORD))  # a second connection of ann's
    gw.turn()
    gw.taken(b"ann-2")
    gw.send(b"ann-1", order("s1", Side.SELL))
    gw.send(b"ann-1", order("s1", Side.SELL))  # a repeat in flight: answered once, later
    commands = gw.turn()
    assert commands == [NewOrder(ann, "s1", "AAPL", Side.SELL, 10, PRICE)]
    gw.commit(commands)
    for ident in (b"ann-1", b"ann-2"):
        [report] = gw.taken(ident)
        assert type(report.events[0]) is Accepted and report.events[0].cl_ord_id == "s1"
    gw.core.request(b"bob-1", order("b1"), gw.now)  # a decoded request, as it is taken
    gw.commit(gw.turn())
    [bob_report] = gw.taken(b"bob-1")
    bob_fill = next(e for e in bob_report.events if type(e) is Fill)
    assert bob_fill.taker_account == bob and bob_fill.maker_account == 0  # anonymous
    for ident in (b"ann-1", b"ann-2"):
        [ann_report] = gw.taken(ident)
        assert [type(e) for e in ann_report.events] == [Fill]
        assert ann_report.events[0].maker_account == ann
        assert ann_report.events[0].taker_account == 0
    assert gw.core.reports_out.value == 5


def test_reports_for_one_session_in_one_drain_are_one_frame():
    gw = Gateway()
    gw.account(b"ann-1", "ann")
    gw.send(b"ann-1", order("c1"))
    gw.send(b"ann-1", order("c2"))
    gw.commit(gw.turn())
    [both] = gw.taken(b"ann-1")
    assert isinstance(both, Reports) and [r.seq for r in both.reports] == [2, 3]


def test_the_in_flight_table_is_bounded_per_account_and_in_all():
    gw = Gateway(gateway={"max_in_flight": 4}, security={"max_in_flight_per_account": 2})
    gw.account(b"ann", "ann")
    gw.account(b"bob", "bob")
    for n in range(3):
        gw.send(b"ann", order(f"a{n}"))
    assert gw.taken(b"ann")[0].code == Reject.TOO_MANY_IN_FLIGHT
    gw.send(b"bob", order("b0"))
    gw.send(b"bob", order("b1"))
    gw.send(b"bob", order("b2"))
    assert gw.taken(b"bob")[0].code == Reject.BUSY  # four in flight: the table is full
    gw.commit(gw.turn())
    assert len(gw.core.inflight) == 0 and gw.core.inflight.held == {}


def test_what_the_matcher_hands_back_is_refused_to_its_senders():
    gw = Gateway()
    ann = gw.account(b"ann", "ann")
    gw.send(b"ann", order("c1"))
    gw.send(b"new", Signup("cat", PASSWORD))
    commands = gw.turn()
    gw.core.from_matcher(MatcherBusy(commands, Reject.BUSY))
    [refused] = gw.taken(b"ann")
    assert refused.code == Reject.BUSY and refused.ref == "c1"
    assert gw.taken(b"new")[0].ref == "cat"
    assert len(gw.core.inflight) == 0 and ann not in gw.core.inflight.held


def test_a_new_primary_gets_every_command_in_flight_and_sessions_hear_of_a_failover():
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.send(b"ann", order("c1"))
    gw.send(b"ann", order("c2"))
    first = gw.turn()
    gw.core.new_primary(2, failover=True)
    assert gw.turn() == first  # sent again, in the order first sent
    [notice] = gw.taken(b"ann")
    assert isinstance(notice, Notice) and "epoch 2" in notice.text
    gw.commit(first)  # the matcher's exactly-once table answers repeats the same way


def test_a_changed_password_ends_every_other_session_of_the_account():
    gw = Gateway()
    gw.account(b"ann-1", "ann")
    gw.send(b"ann-2", Login("ann", PASSWORD))
    gw.turn()
    gw.send(b"ann-1", ChangePassword("p1", PASSWORD, "Other.pw22"))
    commands = gw.turn()
    assert [type(c) for c in commands] == [SetPassword]
    gw.commit(commands)
    [report] = gw.taken(b"ann-1")
    assert type(report.events[0]) is PasswordChanged
    assert gw.core.sessions.get(b"ann-1") is not None
    assert gw.core.sessions.get(b"ann-2") is None
    gw.send(b"ann-2", GetPositions())
    assert gw.taken(b"ann-2")[-1].code == Reject.NOT_LOGGED_IN


def test_a_client_that_does_not_read_is_choked_then_served_again():
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.full.add(b"ann")
    gw.send(b"ann", Ping(1))  # its queue is full: choked
    assert b"ann" in gw.core.choked and gw.core.log.events[-1] == "client_choked"
    gw.full.clear()
    gw.send(b"ann", Ping(2))  # dropped unread while choked
    assert gw.taken(b"ann") == []
    gw.now = gw.core.choked[b"ann"]
    gw.core.expire(gw.now)
    gw.send(b"ann", GetPositions())
    [positions] = gw.taken(b"ann")
    assert isinstance(positions, Positions)


def test_a_session_past_its_rate_is_told_once_then_dropped():
    gw = Gateway(security={"session_rate": 1, "account_rate": 1_000})
    gw.account(b"ann", "ann")
    for n in range(5):
        gw.send(b"ann", Ping(n))
    answers = gw.taken(b"ann")
    assert [type(a) for a in answers] == [Pong, Pong, RequestRejected]
    assert encode(answers[-1]) == RATE_LIMITED_SESSION
    assert gw.core.rate_dropped.value == 3


def test_silent_sessions_expire():
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.core.expire(gw.now + gw.core.session_timeout + 1)
    assert gw.core.sessions.get(b"ann") is None


def test_a_session_owed_an_answer_does_not_expire_until_a_timeout_after_it():
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.send(b"ann", order("c1"))
    commands = gw.turn()
    timeout = gw.core.session_timeout
    gw.core.expire(gw.now + timeout + 1)  # a failover holds c1: the wait is ours
    assert gw.core.sessions.get(b"ann") is not None and not gw.taken(b"ann")
    gw.now += timeout + 1
    gw.commit(commands)
    [report] = gw.taken(b"ann")
    assert report.events[0].cl_ord_id == "c1"
    gw.core.expire(gw.now + timeout / 2)  # answered: silence counts from the last look
    assert gw.core.sessions.get(b"ann") is not None
    gw.core.expire(gw.now + 2 * timeout + 2)
    assert gw.core.sessions.get(b"ann") is None


def test_the_connection_that_sent_a_command_is_answered_after_its_session_ended():
    gw = Gateway()
    gw.account(b"ann-1", "ann")
    gw.send(b"ann-1", order("c1"))
    gw.send(b"ann-1", Logout())  # its session ends with c1 in flight
    commands = gw.turn()
    assert [type(r) for r in gw.taken(b"ann-1")] == [LoggedOut]
    gw.send(b"ann-2", Login("ann", PASSWORD))  # the account's other session
    gw.turn()
    gw.taken(b"ann-2")
    gw.commit(commands)
    for ident in (b"ann-1", b"ann-2"):  # once each
        [report] = gw.taken(ident)
        assert report.events[0].cl_ord_id == "c1"


def test_a_connection_whose_session_a_password_change_ended_gets_no_more_answers():
    """The owner takes the account back: what the other connection had in flight is
    still executed (it was sent while entitled) but reported to the owner only."""
    gw = Gateway()
    gw.account(b"owner", "ann")
    gw.send(b"thief", Login("ann", PASSWORD))
    gw.turn()
    gw.taken(b"thief")
    gw.send(b"owner", ChangePassword("p1", PASSWORD, "Other.pw22"))
    commands = gw.turn()
    gw.send(b"thief", order("c9"))
    commands += gw.turn()
    gw.commit(commands)
    thief = gw.taken(b"thief")
    assert [type(r) for r in thief] == [Notice], thief  # session ended, nothing else
    replies = gw.taken(b"owner")
    reported = [x for r in replies for x in (r.reports if isinstance(r, Reports) else [r])]
    owner = [e for r in reported for e in getattr(r, "events", [])]
    assert any(getattr(e, "cl_ord_id", "") == "c9" for e in owner)


def test_a_connection_now_logged_in_to_another_account_gets_none_of_the_old_ones():
    gw = Gateway()
    gw.account(b"conn", "ann")
    gw.account(b"other", "bob")
    gw.send(b"conn", order("c1"))
    gw.send(b"conn", Logout())
    commands = gw.turn()
    gw.send(b"conn", Login("bob", PASSWORD))
    gw.turn()
    gw.taken(b"conn")
    gw.commit(commands)
    assert not [r for r in gw.taken(b"conn") if isinstance(r, (Report, Reports))]


@pytest.mark.parametrize("busy_code", [Reject.NOT_LEADER, Reject.JOURNAL_FULL])
def test_cancels_handed_back_keep_their_reference(busy_code):
    gw = Gateway()
    gw.account(b"ann", "ann")
    gw.send(b"ann", CancelRequest("x1", 42))
    [cmd] = gw.turn()
    assert cmd == CancelOrder(cmd.account, "x1", 42)
    gw.core.busy([cmd], busy_code)
    [refused] = gw.taken(b"ann")
    assert (refused.code, refused.ref) == (busy_code, "x1")
