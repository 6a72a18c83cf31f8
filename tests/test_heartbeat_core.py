"""The heartbeat service's core without sockets: messages in, messages out."""

from __future__ import annotations

from services.common.bus import Demote, Promote, ServiceBeat, Status, StatusRequest
from services.heartbeat.elector import Elector

TIMEOUT = 0.2


def beat(service: str, role: str, epoch: int = 0, seq: int = 0, pid: int = 1) -> ServiceBeat:
    return ServiceBeat(service, role, pid, epoch, seq)


def test_a_status_request_is_answered_with_every_service_seen():
    elector = Elector(TIMEOUT, 0.0)
    assert elector.receive(b"j", beat("journal", "journal", 1, 5), 0.01) == []
    assert elector.receive(b"m", beat("matcher-a", "primary", 1, 5), 0.02) == []
    [(to, status)] = elector.receive(b"asker", StatusRequest(), 0.05)
    assert to == b"asker" and isinstance(status, Status)
    assert status.epoch == 1
    assert [(s.service, s.role, s.alive) for s in status.services] == [
        ("journal", "journal", True),
        ("matcher-a", "primary", True),
    ]
    assert status.services[1].age_ms == 30


def test_a_new_service_or_a_new_role_asks_for_a_publication_a_repeat_does_not():
    elector = Elector(TIMEOUT, 0.0)
    elector.receive(b"g", beat("gateway", "gateway"), 0.0)
    assert elector.changed
    elector.changed = False  # published
    elector.receive(b"g", beat("gateway", "gateway"), 0.05)
    assert not elector.changed
    elector.receive(b"m", beat("matcher-a", "standby"), 0.06)
    elector.changed = False
    elector.receive(b"m", beat("matcher-a", "primary", 1), 0.07)
    assert elector.changed


def test_anything_else_is_ignored():
    elector = Elector(TIMEOUT, 0.0)
    assert elector.receive(b"x", Promote(3), 0.0) == []
    assert elector.services == {} and not elector.changed


def test_beats_in_then_a_promotion_out_then_a_demotion_of_the_old_primary():
    elector = Elector(TIMEOUT, 0.0)
    sent = []
    for at in (0.05, 0.1, 0.15, 0.2, 0.25):
        elector.receive(b"j", beat("journal", "journal"), at)
        elector.receive(b"a", beat("matcher-a", "standby", seq=9), at)
        elector.receive(b"b", beat("matcher-b", "standby", seq=7), at)
        sent.append(elector.decide(at))
    # nothing in the first timeout; then the most caught-up standby, once (pending)
    assert sent == [[], [], [], [(b"a", Promote(1))], []]
    # a takes it; b is promoted later when a goes silent, and a coming back is demoted
    elector.receive(b"a", beat("matcher-a", "primary", 1, 9), 0.3)
    assert elector.decide(0.3) == []
    elector.receive(b"b", beat("matcher-b", "standby", 1, 9), 0.6)
    elector.receive(b"j", beat("journal", "journal", 1), 0.6)
    assert elector.decide(0.6) == [(b"b", Promote(2))]
    elector.receive(b"b", beat("matcher-b", "primary", 2, 9), 0.65)
    elector.receive(b"j", beat("journal", "journal", 2), 0.65)
    elector.receive(b"a", beat("matcher-a", "primary", 1, 9), 0.7)
    assert elector.decide(0.7) == [(b"a", Demote(2))]
