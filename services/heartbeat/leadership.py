"""Who may hand out an epoch: the heartbeat service asks here before it promotes.

Two implementations of one call, ``claim(matcher, at_least) -> epoch | None``:

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

from services.heartbeat.epochfile import EpochFile
from services.heartbeat.etcd import Etcd, EtcdUnavailable

LEADER_KEY = "/exchange/leader"


class LocalLeadership:
    def __init__(self, epochs: EpochFile) -> None:
        self.epochs = epochs

    def issued(self) -> int:
        return self.epochs.load()

    def claim(self, matcher: str, at_least: int) -> int | None:
        self.epochs.save(at_least)  # OSError: the caller skips this epoch
        return at_least


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

    def claim(self, matcher: str, at_least: int) -> int | None:
        """An epoch above every one claimed before (and >= ``at_least``) for
        ``matcher``, or None if another heartbeat service claimed first or etcd's
        majority cannot be reached."""
        try:
            epoch, holder, revision = self._read()
            new = max(epoch + 1, at_least)
            value = json.dumps({"epoch": new, "matcher": matcher})
            if self.etcd.swap(LEADER_KEY, revision, value):
                return new
            self.log.info("claim_lost", matcher=matcher, epoch=new, holder=holder)
        except EtcdUnavailable as exc:
            self.log.warning("etcd_unavailable", error=str(exc)[:300])
        return None
