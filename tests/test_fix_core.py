"""The FIX service's pure parts: framing and checks of inbound bytes, and execution
reports made from committed records (no sockets)."""

from __future__ import annotations

import pytest

from services.common.bus import CancelOrder, NewOrder, Record, ReplaceOrder
from services.common.wire import (
    Accepted,
    Cancelled,
    CancelReason,
    Duplicate,
    Fill,
    Reject,
    Rejected,
    Replaced,
    Rested,
)
from services.fix import codec
from services.fix.orders import Book, Pending


def message(seq: int = 1, msg_type: str = "0") -> bytes:
    return codec.build(msg_type, "CLI", "EXCHANGE", seq, [(112, "x")])


def test_framer_splits_a_stream_at_any_boundary():
    stream = message(1) + message(2) + message(3)
    for cut in range(1, len(stream)):
        framer = codec.Framer(4096)
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [codec.get(m, 34) for m in got] == ["1", "2", "3"]
        assert framer.garbled == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-4] + b"%03d\x01" % ((int(raw[-4:-1]) + 1) % 256),  # checksum
        lambda raw: raw.replace(b"9=", b"9=1", 1),  # BodyLength 10x too long... or short
        lambda raw: raw.replace(b"9=", b"9=0", 1)[:-1],  # and a truncated trailer
        lambda raw: b"garbage\x01" + raw[3:],  # no BeginString
    ],
)
def test_garbled_messages_are_skipped_and_the_next_one_is_read(damage):
    framer = codec.Framer(4096)
    # a BodyLength too long is found out only once the bytes it claims have come
    after = b"".join(message(seq) for seq in range(2, 40))
    got = framer.feed(damage(message(1)) + after)
    assert [codec.get(m, 34) for m in got] == [str(seq) for seq in range(2, 40)]
    assert framer.garbled >= 1


def test_a_body_past_the_limit_is_refused_before_it_is_read():
    with pytest.raises(codec.TooLarge):
        codec.Framer(100).feed(b"8=FIX.4.4\x019=5000\x0135=0\x01")


def test_build_sets_length_and_checksum_that_the_framer_accepts():
    raw = codec.build("8", "EXCHANGE", "CLI", 7, [(11, "a"), (58, ""), (41, None)])
    (msg,) = codec.Framer(4096).feed(raw)
    assert codec.get(msg, 11) == "a" and msg.get(58) is None and msg.get(41) is None
    again = codec.build("8", "EXCHANGE", "CLI", 7, codec.fields_of(raw)[1], None, "T")
    (dup,) = codec.Framer(4096).feed(again)
    assert (codec.get(dup, 43), codec.get(dup, 122), codec.get(dup, 11)) == ("Y", "T", "a")


def record(seq: int, command, *events) -> Record:
    return Record(seq, 1, command, list(events))


def test_book_reports_an_order_through_fill_replace_and_cancel():
    book = Book()
    book.pending[(7, "c1")] = Pending("S1", "D")
    new = NewOrder(7, "c1", "AAPL", 1, 100, 1_700_000, 1, 2)
    out = book.apply(
        record(1, new, Accepted(7, "c1", 11, "AAPL", 1, 1_700_000, 100),
               Fill(1, "AAPL", 1, 1_700_000, 40, 7, 11, 60, 8, 12, 0),
               Rested(7, 11, "AAPL", 1, 1_700_000, 60)),
        7,
        [Accepted(7, "c1", 11, "AAPL", 1, 1_700_000, 100),
         Fill(1, "AAPL", 1, 1_700_000, 40, 7, 11, 60, 0, 0, 0),
         Rested(7, 11, "AAPL", 1, 1_700_000, 60)],
    )  # fmt: skip
    assert [(o.owner, dict(o.fields)[150]) for o in out] == [("S1", "0"), ("S1", "F")]
    trade = dict(out[1].fields)
    assert (trade[39], trade[14], trade[151], trade[6], trade[59]) == ("1", 40, 60, "170.00", "3")
    replace = ReplaceOrder(7, "c2", 11, 1_690_000, 30)
    (replaced,) = book.apply(
        record(2, replace),
        7,
        [Replaced(7, "c2", 11, "AAPL", 1, 1_700_000, 60, 1_690_000, 30, False)],
    )
    fields = dict(replaced.fields)
    assert (fields[150], fields[11], fields[41], fields[38], fields[151]) == (
        "5",
        "c2",
        "c1",
        70,
        30,
    )
    (cancelled,) = book.apply(
        record(3, CancelOrder(7, "c3", 11)),
        7,
        [Cancelled(7, 11, "AAPL", 1, 1_690_000, 30, CancelReason.USER, True, "c3")],
    )
    fields = dict(cancelled.fields)
    assert (fields[150], fields[39], fields[41], fields[14], fields[151]) == ("4", "4", "c2", 40, 0)
    assert book.find(7, "c3").order_id == 11 and book.find(7, "c1") is None


def test_book_answers_rejects_and_duplicates_to_the_sender():
    book = Book()
    book.pending[(7, "x")] = Pending("S1", "D")
    new = NewOrder(7, "x", "AAPL", 2, 5, 9_990_000)
    (rejected,) = book.apply(record(1, new), 7, [Rejected(7, "x", Reject.PRICE_BAND)])
    fields = dict(rejected.fields)
    assert rejected.owner == "S1" and (fields[150], fields[39]) == ("8", "8")
    assert "PRICE_BAND" in fields[58] and fields[103] == 99
    book.pending[(7, "k")] = Pending("S1", "F", "nosuch")
    (refused,) = book.apply(
        record(2, CancelOrder(7, "k", 99)), 7, [Rejected(7, "k", Reject.UNKNOWN_ORDER)]
    )
    assert refused.msg_type == "9" and dict(refused.fields)[102] == 1
    # an order whose first answer was lost: the resend's duplicate makes it the sender's
    accepted = Accepted(7, "d", 12, "AAPL", 1, 1_700_000, 10)
    book.apply(record(3, NewOrder(7, "d", "AAPL", 1, 10, 1_700_000)), 7, [accepted])
    assert book.orders[12].owner == ""
    book.pending[(7, "d")] = Pending("S2", "D")
    (status,) = book.apply(record(4, NewOrder(7, "d", "AAPL", 1, 10, 1_700_000)), 7,
                           [Duplicate(7, "d", accepted)])  # fmt: skip
    assert status.owner == "S2" and dict(status.fields)[150] == "I"
    assert book.orders[12].owner == "S2"


def test_book_forgets_the_oldest_finished_orders_past_its_bound():
    book = Book(orders_kept=3)
    for i in range(10):
        accepted = Accepted(7, f"o{i}", i + 1, "AAPL", 1, 1_700_000, 1)
        cancelled = Cancelled(7, i + 1, "AAPL", 1, 1_700_000, 1, CancelReason.IOC, False)
        book.apply(record(i + 1, NewOrder(7, f"o{i}", "AAPL", 1, 1)), 7, [accepted, cancelled])
    assert sorted(book.orders) == [8, 9, 10]
    assert book.find(7, "o0") is None and book.find(7, "o9").order_id == 10


class StubService:
    """What a Connection needs of the service, recording what it would send."""

    def __init__(self) -> None:
        from services.common import config

        self.cfg = config.Config(symbols={})
        self.sent: list[str] = []
        self.now = 0.0

    def emit(self, state, msg_type, fields, conn=None) -> None:
        self.sent.append(msg_type)
        if conn is not None:
            conn.last_out = self.now

    def save(self, state) -> None:
        pass


def test_heartbeat_test_request_then_logout_when_the_counterparty_is_silent():
    from services.fix.session import Connection
    from services.fix.store import ORDER_ENTRY, SessionState

    service = StubService()
    conn = Connection(service, "peer")
    conn.state, conn.heartbeat_s = SessionState("S", 1, "n", ORDER_ENTRY), 10.0
    conn.last_in = conn.last_out = 100.0
    for now in (105.0, 110.5, 112.5, 121.0, 123.0):
        service.now = now
        conn.check_silence(now)
    # our heartbeat after 10 s quiet, a TestRequest after 12 s silent, Logout 10 s later
    assert service.sent == ["0", "1", "0", "5"]
    assert conn.closing


def test_day_gtd_and_on_close_orders_report_their_time_in_force_and_expiry():
    """59 as entered (0 Day, 6 GTD with 432 ExpireDate, 7 At the Close); an expiry at the
    end of the day is a Canceled report saying so."""
    book = Book()
    for n, (tif, expire, fix_tif) in enumerate(((4, 0, "0"), (5, 20260106, "6"), (6, 0, "7"))):
        cl = f"t{n}"
        book.pending[(7, cl)] = Pending("S1", "D")
        new = NewOrder(7, cl, "AAPL", 1, 10, 1_700_000, 1, tif, expire_date=expire)
        accepted = Accepted(7, cl, 20 + n, "AAPL", 1, 1_700_000, 10)
        (out,) = book.apply(record(1 + n, new, accepted), 7, [accepted])
        fields = dict(out.fields)
        assert (fields[59], fields.get(432)) == (fix_tif, expire or None)
    expired = Cancelled(7, 20, "AAPL", 1, 1_700_000, 10, CancelReason.EXPIRED, True)
    (out,) = book.apply(record(9, NewOrder(1, "x", "AAPL", 1, 1), expired), 7, [expired])
    assert dict(out.fields)[150] == "4" and "expired" in dict(out.fields)[58]


def test_a_clordid_used_again_on_a_later_day_names_the_new_order():
    """ClOrdIDs are unique per trading day: forgetting an old finished order must not
    forget the new order that took its ClOrdID."""
    book = Book(orders_kept=1)
    for order_id in (1, 2):  # the same ClOrdID on two days
        new = NewOrder(7, "same", "AAPL", 1, 10, 1_700_000, 1, 4)
        accepted = Accepted(7, "same", order_id, "AAPL", 1, 1_700_000, 10)
        book.apply(record(order_id, new, accepted), 7, [accepted])
    assert book.find(7, "same").order_id == 2
    for order_id in (1, 2, 3):  # both finish; the first is forgotten
        done = Cancelled(7, order_id, "AAPL", 1, 1_700_000, 10, CancelReason.EXPIRED, True)
        book.apply(record(10 + order_id, NewOrder(1, "x", "AAPL", 1, 1), done), 7, [done])
    assert 1 not in book.orders and book.find(7, "same").order_id == 2
