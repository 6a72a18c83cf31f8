"""Following a sequenced record stream in order, with no gap and no repeat.

PUB/SUB drops messages under bursts and a subscriber that joins late misses the start
(docs/performance.md), so a follower never trusts the feed alone: it checks every record's
sequence number, and fetches what it missed from a read endpoint that serves ranges
(the journal for the committed stream, the matcher for its retransmit buffer). Idle
beats carry the last sequence number, so a follower also notices a loss at the tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from services.common import curve
from services.common.bus import TOPIC_BEAT, TOPIC_RECORDS, Archived, ReadRange, Record
from services.common.codec import (
    DecodeError,
    RawRecord,
    beat_decoder,
    bus_decoder,
    encode,
    records_decoder,
)
from services.common.frames import recv_frames

FETCH_CHUNK = 2_000
Sequenced = Record | RawRecord


class HistoryArchived(RuntimeError):
    """The source archived records this reader needs: it must boot from a snapshot."""

    def __init__(self, wanted: int, first_kept: int) -> None:
        super().__init__(
            f"records from seq {wanted} are archived (the journal keeps {first_kept} on): "
            f"restore this service's snapshots ($EXCHANGE_HOME/snapshots/) or the "
            f"archived segments (journal/archive/) to start it"
        )


class Follower:
    """Yields records ``next_seq``, ``next_seq + 1``, ... from a PUB feed plus a range reader.

    ``decode`` turns a batch into records; anything with ``seq`` and ``epoch`` will do
    (the journal follows with ``raw_records``, which leaves the rest encoded)."""

    def __init__(
        self,
        ctx: zmq.Context,
        pub_endpoint: str,
        read_endpoint: str,
        next_seq: int = 1,
        timeout_ms: int = 1_000,
        decode: Callable[[bytes], list[Sequenced]] = records_decoder.decode,
    ) -> None:
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, 200_000)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, TOPIC_RECORDS)
        self.sub.setsockopt(zmq.SUBSCRIBE, TOPIC_BEAT)
        curve.link(self.sub, pub_endpoint)
        self._ctx = ctx
        self._decode = decode
        self._read_endpoint = read_endpoint
        self._reader = self._connect_reader()
        self.next_seq = next_seq
        self.timeout_ms = timeout_ms
        self.source_seq = next_seq - 1  # highest sequence number the source says it has
        self.gap_reads = 0  # range reads made to fill gaps the feed left
        self.source_epoch = 0
        self.source_commit = 0  # the commit position a primary's beats announce
        self.quiet_after = 0.5  # seconds without a message before asking the source
        # whether a quiet feed is a reason to ask the source: a range read blocks up to
        # ``timeout_ms`` while the source is down, which a service whose loop must keep
        # answering (the gateway, a standby matcher's beats) cannot afford every turn
        self.probe_when_quiet = True
        self._heard = time.monotonic()

    def _connect_reader(self) -> zmq.Socket:
        reader = self._ctx.socket(zmq.DEALER)
        reader.setsockopt(zmq.LINGER, 0)
        curve.link(reader, self._read_endpoint)
        return reader

    def close(self) -> None:
        self.sub.close(0)
        self._reader.close(0)

    def fetch(self, first: int, count: int) -> list[Sequenced] | None:
        """Records from ``first`` (fewer if the source has fewer); None if it did not answer.

        A reader that timed out is replaced, so a late answer can never be taken for
        the answer to a later question."""
        self._reader.send(encode(ReadRange(first, count)))
        if not self._reader.poll(self.timeout_ms):
            self._reader.close(0)
            self._reader = self._connect_reader()
            return None
        payload = self._reader.recv()
        try:
            return self._decode(payload)
        except DecodeError:
            answer = bus_decoder.decode(payload)
            if isinstance(answer, Archived):
                raise HistoryArchived(first, answer.first_seq) from None
            raise

    def catch_up(self) -> list[Sequenced] | None:
        """Everything the source has from ``next_seq`` on, read in chunks."""
        out: list[Sequenced] = []
        while True:
            records = self.fetch(self.next_seq, FETCH_CHUNK)
            if records is None:
                return out if out else None
            if not records:
                return out
            for record in records:
                self._accept(record, out)

    def catch_up_patiently(self, keep_trying, log) -> list[Sequenced]:
        """``catch_up``, retried while ``keep_trying()`` and the source does not answer
        (at boot the journal may still be starting)."""
        records = self.catch_up()
        while records is None and keep_trying():
            log.warning("source_unreachable")
            records = self.catch_up()
        return records or []

    def _accept(self, record: Sequenced, out: list[Sequenced]) -> None:
        if record.seq == self.next_seq:
            out.append(record)
            self.next_seq += 1
            if record.seq > self.source_seq:
                self.source_seq = record.seq
            self.source_epoch = max(self.source_epoch, record.epoch)

    def _fill(self, upto: int, out: list[Sequenced]) -> bool:
        """Fetch ``next_seq`` .. ``upto``; False if the source could not supply them now."""
        while self.next_seq <= upto:
            self.gap_reads += 1
            records = self.fetch(self.next_seq, min(FETCH_CHUNK, upto - self.next_seq + 1))
            if not records:
                return False
            for record in records:
                self._accept(record, out)
        return True

    def quiet(self) -> bool:
        """True when the feed has said nothing for a while: a lost subscription or a
        stalled PUB must not leave the follower behind, so it asks the source itself."""
        return time.monotonic() - self._heard > self.quiet_after

    def due(self, readable: bool) -> bool:
        """Whether to drain now (``readable``: the SUB socket has something): a message
        waits, a beat said the source is ahead, or the feed has been quiet long enough
        that the source should be asked directly (``quiet``)."""
        return (
            readable or self.source_seq >= self.next_seq or (self.probe_when_quiet and self.quiet())
        )

    def drain(self) -> list[Sequenced]:
        """Everything new, in order: records waiting on the SUB socket, plus gap fills."""
        out: list[Sequenced] = []
        sub = self.sub
        if self.probe_when_quiet and self.quiet():
            self._heard = time.monotonic()
            records = self.fetch(self.next_seq, FETCH_CHUNK)
            for record in records or ():
                self._accept(record, out)
        while True:
            try:
                topic, payload = recv_frames(sub)
            except zmq.Again:
                break
            self._heard = time.monotonic()
            if topic == TOPIC_BEAT:
                beat = beat_decoder.decode(payload)
                self.source_seq = max(self.source_seq, beat.seq)
                self.source_epoch = max(self.source_epoch, beat.epoch)
                if beat.commit > self.source_commit:
                    self.source_commit = beat.commit
                continue
            records = self._decode(payload)
            if not records or records[-1].seq < self.next_seq:
                continue
            if records[0].seq > self.next_seq and not self._fill(records[0].seq - 1, out):
                return out  # source not answering: what follows will be fetched later
            for record in records:
                self._accept(record, out)
        if self.source_seq >= self.next_seq:
            self._fill(self.source_seq, out)
        return out
