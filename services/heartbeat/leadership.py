"""Who may hand out an epoch: the heartbeat service asks here before it promotes.

Two implementations of one call, ``claim(matcher, at_least, known) -> Claim``:

- ``LocalLeadership`` (one host): the heartbeat service alone decides; each epoch is
  written to ``$EXCHANGE_HOME/heartbeat/epoch`` before a Promote carries it.
- ``EtcdLeadership`` (a cluster): one heartbeat service per host, each seeing every
  service's beats, may each decide to promote; etcd decides which of them does. The
  key ``/exchange/leader`` holds the current epoch and its primary, and is changed
  only by compare-and-swap from the value read, so no epoch is ever handed out twice,
  and a heartbeat service cut off from etcd's majority cannot promote at all.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from services.heartbeat.epochfile import EpochFile
from services.heartbeat.etcd import Etcd, EtcdUnavailable

LEADER_KEY = "/exchange/leader"


class Claim(NamedTuple):
    """``won``: promote ``matcher`` at ``epoch``. ``wait``: another heartbeat service
    promoted ``matcher`` at ``epoch``, an epoch this one has not seen reign yet: give
    that promotion its time before trying again. ``none``: etcd is out of reach."""

    outcome: str
    epoch: int = 0
    matcher: str = ""


class LocalLeadership:
    def __init__(self, epochs: EpochFile) -> None:
        self.epochs = epochs

    def issued(self) -> int:
        return self.epochs.load()

    def claim(self, matcher: str, at_least: int, known: int) -> Claim:
        self.epochs.save(at_least)  # OSError: the caller skips this epoch
        return Claim("won", at_least, matcher)


class EtcdLeadership:
    def __init__(self, etcd: Etcd, log) -> None:
        self.etcd = etcd
        self.log = log

    def _read(self) -> tuple[int, str, int]:
        value, revision = self.etcd.get(LEADER_KEY)
        if value is None:
            return 0, "", 0
        held = json.loads(value)
        return int(held["epoch"]), str(held["matcher"]), revision

    def issued(self) -> int:
        try:
            return self._read()[0]
        except EtcdUnavailable:
            return 0  # beats will tell; a claim reads the key again anyway

    def claim(self, matcher: str, at_least: int, known: int) -> Claim:
        """An epoch above every one claimed before (and >= ``at_least``) for
        ``matcher``; or, when the key holds an epoch above ``known`` (the highest this
        heartbeat service has seen or given up on), that promotion to wait for; or
        nothing when etcd's majority cannot be reached."""
        try:
            epoch, holder, revision = self._read()
            if epoch > known:
                return Claim("wait", epoch, holder)
            new = max(epoch + 1, at_least)
            value = json.dumps({"epoch": new, "matcher": matcher})
            if self.etcd.swap(LEADER_KEY, revision, value):
                return Claim("won", new, matcher)
            epoch, holder, _ = self._read()  # lost a race: wait for the winner
            self.log.info("claim_lost", matcher=matcher, epoch=epoch, holder=holder)
            return Claim("wait", epoch, holder)
        except EtcdUnavailable as exc:
            self.log.warning("etcd_unavailable", error=str(exc)[:300])
        return Claim("none")
