"""The heartbeat service's decisions, beat by beat: no epoch is ever promised twice."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.bus import Demote, Promote, ServiceBeat
from services.heartbeat.elector import Elector
from services.heartbeat.epochfile import EpochFile, EpochFileError

TIMEOUT = 0.2  # 4 missed beats of 50 ms
DEADLINE = 2.0  # a promotion not taken by then is given up


class Run:
    """An Elector fed by hand; every message it sends is kept."""

    def __init__(self, issued: int = 0) -> None:
        self.elector = Elector(TIMEOUT, 0.0, issued)
        self.now = 0.0
        self.sent: list[tuple[bytes, object]] = []

    def beat(self, service: str, role: str, epoch: int = 0, seq: int = 0) -> None:
        self.elector.observe(service.encode(), ServiceBeat(service, role, 1, epoch, seq), self.now)

    def tick(self, seconds: float, *beats: tuple) -> None:
        """Let ``seconds`` pass, ``beats`` arriving every 50 ms, deciding as it goes."""
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + 0.05, 3)
            for beat in beats:
                self.beat(*beat)
            self.sent += self.elector.decide(self.now)

    def promotes(self) -> list[tuple[str, int]]:
        return [(ident.decode(), m.epoch) for ident, m in self.sent if isinstance(m, Promote)]


def test_a_late_beat_from_the_old_primary_does_not_free_the_pending_epoch():
    run = Run()
    journal = ("journal", "journal", 2)
    run.tick(1.0, journal, ("matcher-a", "primary", 2, 100), ("matcher-b", "standby", 2, 100))
    assert run.promotes() == []
    run.tick(0.3, journal, ("matcher-b", "standby", 2, 100))  # a stops beating
    assert run.promotes() == [("matcher-b", 3)]
    # a's late beat, still primary at the old epoch, while b's promotion is pending;
    # then b never reports as primary, a goes silent again, and c is the standby left
    run.beat("matcher-a", "primary", 2, 100)
    run.tick(0.1, journal)
    run.tick(DEADLINE + 0.5, journal, ("matcher-c", "standby", 2, 100))
    assert run.promotes() == [("matcher-b", 3), ("matcher-c", 4)]


def test_a_late_beat_at_the_pending_epoch_from_a_primary_that_died():
    run = Run()
    run.tick(0.5, ("journal", "journal", 0), ("matcher-a", "standby"), ("matcher-b", "standby"))
    assert run.promotes() == [("matcher-a", 1)]
    run.tick(0.5, ("journal", "journal", 1), ("matcher-a", "primary", 1), ("matcher-b", "standby"))
    run.tick(0.5, ("journal", "journal", 1), ("matcher-b", "standby", 1))  # a died
    assert run.promotes() == [("matcher-a", 1), ("matcher-b", 2)]
    # b takes epoch 2 and dies; a comes back as a standby; then a late beat of b, as
    # primary at 2, arrives: it delays the next promotion but cannot make it reuse 2
    run.tick(0.3, ("journal", "journal", 2), ("matcher-b", "primary", 2))
    run.tick(0.3, ("journal", "journal", 2), ("matcher-a", "standby", 2))
    assert run.promotes()[-1] == ("matcher-a", 3)
    run.beat("matcher-b", "primary", 2)
    run.tick(DEADLINE + 0.5, ("journal", "journal", 2), ("matcher-a", "standby", 2))
    assert [epoch for _, epoch in run.promotes()] == [1, 2, 3, 4]  # a again, at 4


def test_a_primary_of_an_older_epoch_is_demoted():
    run = Run()
    run.tick(0.5, ("journal", "journal", 3), ("matcher-a", "primary", 2))
    assert (b"matcher-a", Demote(3)) in run.sent


def test_promotions_start_above_the_stored_epoch():
    run = Run(issued=7)  # promised before a restart, never seen in a beat
    run.tick(0.5, ("journal", "journal", 2), ("matcher-b", "standby", 2))
    assert run.promotes() == [("matcher-b", 8)]


BEATS = st.lists(
    st.tuples(
        st.floats(0, 1.0),  # time passing first
        st.sampled_from(["matcher-a", "matcher-b", "matcher-c", "journal"]),
        st.sampled_from(["primary", "standby"]),
        st.integers(-2, 1),  # epoch relative to the highest promised so far
        st.integers(0, 3),  # seq
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(beats=BEATS, issued=st.integers(0, 3))
def test_every_promoted_epoch_is_new(beats, issued):
    """Whatever beats arrive, late or out of order, every Promote carries an epoch
    above every epoch promoted before and every epoch any beat reported."""
    elector = Elector(TIMEOUT, 0.0, issued)
    now, highest, sent = 0.0, issued, []
    for wait, service, role, relative, seq in beats:
        now += wait
        epoch = max(0, max([issued, *sent]) + relative)
        highest = max(highest, epoch)
        role = "journal" if service == "journal" else role
        elector.observe(service.encode(), ServiceBeat(service, role, 1, epoch, seq), now)
        for _, msg in elector.decide(now):
            if isinstance(msg, Promote):
                assert msg.epoch > highest
                sent.append(msg.epoch)
                highest = msg.epoch
    assert sent == sorted(set(sent))


def test_the_epoch_file_is_private_atomic_and_checked(tmp_path):
    epochs = EpochFile(tmp_path / "heartbeat" / "epoch")
    assert epochs.load() == 0
    epochs.save(5)
    epochs.save(6)
    assert epochs.load() == 6
    assert stat.S_IMODE((tmp_path / "heartbeat").stat().st_mode) == 0o700
    assert stat.S_IMODE(epochs.path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path / "heartbeat") == ["epoch"]  # no temp file left
    (tmp_path / "heartbeat" / "epoch.999.tmp").write_text("7")  # a save cut short
    assert epochs.load() == 6 and os.listdir(tmp_path / "heartbeat") == ["epoch"]
    epochs.path.write_text("garbage")
    with pytest.raises(EpochFileError, match="highest epoch ever promoted"):
        epochs.load()


def test_a_standby_that_has_stood_is_preferred_to_one_restarted_a_moment_ago():
    """The old primary killed and restarted at once replays to the committed seq and
    beats as a standby before the heartbeat has noticed it died: the standby that has
    been following all along is promoted, though a few records behind."""
    run = Run()
    journal = ("journal", "journal", 1)
    run.tick(1.0, journal, ("matcher-a", "primary", 1, 500), ("matcher-b", "standby", 1, 490))
    run.tick(0.1, journal, ("matcher-a", "standby", 1, 500), ("matcher-b", "standby", 1, 495))
    assert run.promotes() == [("matcher-b", 2)]
