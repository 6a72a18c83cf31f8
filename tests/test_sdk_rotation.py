"""The socket-free decisions of a client with several gateways: which endpoint next,
when silence means the gateway is gone, what to resend; and where the lists come from
(the config, EXCHANGE_GATEWAYS, EXCHANGE_MARKETDATA)."""

from __future__ import annotations

import pytest

from clients import settings
from clients.core import (
    GONE,
    MAX_SENT,
    PROBE,
    WAIT,
    Rotation,
    Waiting,
    endpoint_list,
    order_request,
)
from services.common.wire import (
    Accepted,
    GetPositions,
    Login,
    Ping,
    Reject,
    Report,
    RequestRejected,
    Side,
    Signup,
)

A, B, C = "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555", "tcp://10.0.0.3:5555"


def test_one_endpoint_or_several():
    assert endpoint_list(A) == [A]
    assert endpoint_list(f"{A}, {B},") == [A, B]
    assert endpoint_list((A, B)) == [A, B]
    with pytest.raises(ValueError):
        endpoint_list(" , ")


def test_silence_probes_then_moves_round_the_list():
    r = Rotation([A, B, C], silence_s=1.0, probe_s=0.25)
    assert r.current == A and r.check(100.0) == WAIT  # nothing due: quiet is fine
    r.sent(100.0)
    assert r.check(100.2) == WAIT
    assert r.check(100.3) == PROBE
    r.probed(100.3)
    assert r.check(101.2) == WAIT
    r.sent(101.25)  # more requests do not put off the verdict
    assert r.check(101.3) == GONE
    assert r.move() == B and r.moves == 1 and not r.connected
    assert r.check(200.0) == WAIT  # nothing due at the new one yet
    r.move()
    assert r.move() == A  # round the list


def test_anything_heard_clears_the_silence():
    r = Rotation([A, B], silence_s=1.0, probe_s=0.25)
    r.sent(0.0)
    r.probed(0.3)
    r.heard(0.5, still_due=True)  # an answer, more to come: due again from now
    assert r.check(0.7) == WAIT and r.check(0.76) == PROBE
    r.heard(0.8, still_due=False)  # everything answered
    assert r.check(50.0) == WAIT


def test_one_endpoint_never_moves():
    r = Rotation([A], silence_s=1.0, probe_s=0.25)
    r.sent(0.0)
    assert r.check(1000.0) == WAIT and not r.dropped()
    assert Rotation([A, B]).dropped()


def test_what_is_resent_after_a_move():
    w = Waiting()
    waited = order_request("AAPL", Side.BUY, 1, 100, cl_ord_id="waited")
    fired = order_request("AAPL", Side.BUY, 1, 100, cl_ord_id="fired")
    answered = order_request("AAPL", Side.BUY, 1, 100, cl_ord_id="answered")
    w.add(waited, "h1")
    w.add(GetPositions(), "h2")
    w.add(Login("bob", "pw"), "h3")
    w.add(Signup("carol", "pw"), "h4")
    for request in (fired, answered, Ping(0), Signup("x", "y")):
        w.track(request)  # pings and sign-ups are not kept
    assert w.answer(Report(7, 1, [Accepted(1, "answered", 1, "AAPL", Side.BUY, 100, 1)])) == []
    assert w.tracked() == [fired]
    assert w.unanswered() == [waited, fired, GetPositions()]
    assert w.unanswered(sessions=True, signups=True) == [
        waited,
        fired,
        GetPositions(),
        Login("bob", "pw"),
        Signup("carol", "pw"),
    ]
    # a reject naming a tracked request answers nobody: it is the reader's
    assert w.answer(RequestRejected(Reject.TOO_MANY_IN_FLIGHT, "", "fired")) == []
    assert w.tracked() == [] and w.due()
    assert sorted(w.abandon()) == ["h1", "h2"]  # the session could not be made again
    assert w.unanswered() == []


def test_requests_kept_for_a_resend_are_bounded():
    w = Waiting()
    for i in range(MAX_SENT + 5):
        w.track(order_request("AAPL", Side.BUY, 1, 100, cl_ord_id=f"o{i}"))
    kept = w.tracked()
    assert len(kept) == MAX_SENT and kept[0].cl_ord_id == "o5"  # the oldest went first


def test_the_lists_from_the_config_and_the_environment(cfg, monkeypatch):
    monkeypatch.delenv("EXCHANGE_GATEWAYS", raising=False)
    monkeypatch.delenv("EXCHANGE_MARKETDATA", raising=False)
    assert settings.gateways(cfg) == [cfg.endpoints.gateway]  # one host: the one
    assert settings.marketdata(cfg) == (
        [cfg.endpoints.marketdata_pub],
        [cfg.endpoints.marketdata_snapshot],
    )
    monkeypatch.setenv("EXCHANGE_GATEWAYS", f"{A},{B}")
    monkeypatch.setenv(
        "EXCHANGE_MARKETDATA", "tcp://h1:5556|tcp://h1:5557, tcp://h2:5556|tcp://h2:5557"
    )
    assert settings.gateways(cfg) == [A, B]
    assert settings.marketdata(cfg) == (
        ["tcp://h1:5556", "tcp://h2:5556"],
        ["tcp://h1:5557", "tcp://h2:5557"],
    )
    monkeypatch.setenv("EXCHANGE_MARKETDATA", "tcp://h1:5556")
    with pytest.raises(ValueError, match="PUB\\|SNAPSHOT"):
        settings.marketdata(cfg)
