"""The statements writer: per-account statements at each end of day, from the journal.

It follows the journal's committed stream as every reader does (``stream.Follower``,
gaps filled from the journal's range reads), so a statement holds only what is
durable and exactly what the journal says. The ledger (``ledger.py``) carries
cash and positions; at each ``day_ended`` record the day's statements are written
(``files.py``: a whole day or nothing, from the day's spool of trades and cash
movements, ``spool.py``, then removed), then the carry is saved as this service's
snapshot at that record's seq (``snapshots/statements/``, temp file, fsync, rename).

Restart, a SIGKILL included, loads the newest carry and replays from the record after
it: at most the day under way, never the journal from seq 1 (except at the very first
start). A crash between a day's files and its carry replays that day and writes the
same files again; a crash before the files leaves no trace of the day until then. The
journal keeps the records after this service's oldest kept carry (``snapfile``'s
optional readers), so the replay always finds them.

Writing runs on one thread beside the loop (at most one day at a time): a day's files
are an fsync each, and the loop keeps following and beating meanwhile.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from services.common import snapfile
from services.common.bus import Record
from services.common.config import Config, service_name
from services.common.node import Node
from services.common.stream import Follower, HistoryArchived
from services.gateway.accounts import AccountView
from services.statements import files, spool
from services.statements.ledger import Carry, DayStatements, Holding, Ledger, carry_decoder

POLL_MS = 100
SERVICE = "statements"
CARRIES_KEPT = 3
SPOOL = ".spool"  # under the statements directory


def load_carry(where: Path, log=None) -> Carry | None:
    found = snapfile.newest_state(where, carry_decoder.decode, log)
    return found[1] if found else None


class StatementsService:
    def __init__(self, cfg: Config, log) -> None:
        self.cfg = cfg
        self.log = log
        node = self.node = Node(SERVICE, cfg, log)
        self.root = Path(cfg.statements.directory)
        self.carries = snapfile.directory(cfg.home, SERVICE)
        # the directory's existence tells this host's journal to keep our records
        self.carries.mkdir(mode=0o700, parents=True, exist_ok=True)
        snapfile.remove_stale_temps(self.carries)
        files.remove_leftovers(self.root)
        carry = load_carry(self.carries, log)
        references = {name: spec.reference for name, spec in cfg.symbols.items()}
        # the day's trades and cash movements: on disk, rebuilt by the replay
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool = spool.Spool(self.root / SPOOL)
        node.close_later(self.spool.close)
        self.ledger = Ledger(references, self.spool, carry)
        if carry is not None:
            log.info("carry_loaded", seq=carry.seq, trading_date=carry.trading_date)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="statements")
        self.writing: Future | None = None
        self.failed = False  # a day's files or carry could not be written: stop
        node.close_later(self._finish_writing)
        self.follower = Follower(
            node.ctx,
            cfg.endpoints["journal_pub"],
            cfg.endpoints["journal_read"],
            self.ledger.seq + 1,
        )
        node.close_later(self.follower.close)
        self.days = node.metrics.counter("statement_days", "trading days written")
        node.follow(self.follower, self.apply)
        ledger, follower = self.ledger, self.follower
        node.beat_with(
            service_name(cfg, SERVICE),
            lambda: (SERVICE, follower.source_epoch, ledger.seq, follower.source_seq),
        )

    def apply(self, records: list[Record]) -> None:
        ledger = self.ledger
        for record in records:
            if self.failed:
                return  # stopping: the restart replays from the last carry
            day = ledger.apply(record)
            if ledger.ended:
                # a day ended (the first one's start too): its files, then the carry
                self._write(day, record.seq, ledger.snapshot())

    def _write(self, day: DayStatements | None, seq: int, carry: bytes) -> None:
        self._finish_writing()  # one day at a time: memory stays bounded
        if self.failed:  # never a carry past a day whose files could not be written
            self.node.stop()
            return
        self.writing = self.writer.submit(self._write_now, day, seq, carry)

    def _write_now(self, day: DayStatements | None, seq: int, carry: bytes) -> None:
        try:
            if day is not None:
                where = files.write_day(self.root, day)
                self.log.info(
                    "statements_written",
                    trading_date=day.trading_date,
                    accounts=len(day.statements),
                    seq=seq,
                    path=str(where),
                )
                self.days.value += 1
            snapfile.write(self.carries, seq, carry, CARRIES_KEPT)
        except OSError as exc:
            # the carry stays behind, so stop: the restart (supervisord) replays the day
            # from it and writes it again. Going on would save the next day's carry past
            # this day, which then could never be written.
            self.log.error("statements_failed", seq=seq, error=str(exc))
            self.failed = True
            self.node.stop()
            return
        spool.remove(day.lines if day is not None else None)

    def _finish_writing(self) -> None:
        if self.writing is not None:
            self.writing.result()
            self.writing = None

    def seed(self) -> bool:
        """A first start on a journal whose head is archived (an exchange that ran
        before it had a statements writer): carry on from the gateway's newest
        snapshot on this host, which holds every account's cash and positions at its
        seq. The first day's statements then start at that record (``first_seq``)."""
        found = snapfile.newest_state(
            snapfile.directory(self.cfg.home, "gateway"), AccountView.restore, self.log
        )
        if found is None:
            return False
        seq, view = found
        names = {account: name for name, account in view.names.items()}
        accounts = {
            account: Holding(names.get(account, f"#{account}"), view.cash.get(account, 0),
                             dict(view.positions.get(account, {})))
            for account in sorted(names.keys() | view.cash.keys())
        }  # fmt: skip
        self.ledger.carry = Carry(seq, 0, seq + 1, accounts)
        self.follower.next_seq = seq + 1
        self.follower.source_seq = max(self.follower.source_seq, seq)
        self.log.warning("seeded_from_gateway_snapshot", seq=seq, accounts=len(accounts))
        return True

    def run(self) -> int:
        try:
            try:
                records = self.node.catch_up(self.follower)
            except HistoryArchived:
                if self.ledger.seq or not self.seed():
                    raise
                records = self.node.catch_up(self.follower)
            self.apply(records)
            self.log.info("ready", seq=self.ledger.seq, trading_date=self.ledger.carry.trading_date)
            code = self.node.run(POLL_MS)
            self._finish_writing()
            return 1 if self.failed else code
        except HistoryArchived as exc:
            self.log.error("history_archived", error=str(exc))
            self.node.close()
            return 1
        finally:
            self.writer.shutdown(wait=True)
