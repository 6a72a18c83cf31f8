"""What the FIX service keeps on disk: each session's sequence numbers and the messages
it sent (for ResendRequest), the orders it reports on, the requests awaiting an answer,
and the journal position its reports were made up to.

One SQLite database, ``$EXCHANGE_HOME/fix/fix.db`` (WAL). Everything one turn of the
service changes is one transaction, committed before anything it decided is written to
a socket: a restart (a SIGKILL included) finds the sequence numbers, the stored
messages and the journal position in step, so it neither repeats a MsgSeqNum nor
misses a report.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from services.fix.orders import Book, Order, Pending

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    sender TEXT PRIMARY KEY, account INTEGER NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, next_in INTEGER NOT NULL, next_out INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    sender TEXT NOT NULL, seq INTEGER NOT NULL, raw BLOB NOT NULL,
    PRIMARY KEY (sender, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    account INTEGER NOT NULL, cl_ord_id TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (account, cl_ord_id)) WITHOUT ROWID;
"""
ORDER_ENTRY, DROP_COPY = "order_entry", "drop_copy"


@dataclass(slots=True)
class SessionState:
    sender: str  # the counterparty's SenderCompID: the session's name
    account: int
    name: str  # the exchange account's name
    kind: str  # ORDER_ENTRY or DROP_COPY
    next_in: int = 1  # the MsgSeqNum expected next from the counterparty
    next_out: int = 1  # the MsgSeqNum of our next message


class Store:
    def __init__(self, home: Path, store_kept: int) -> None:
        directory = home / "fix"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        self.path = directory / "fix.db"
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.path.chmod(0o600)
        # WAL with NORMAL sync: a commit is in the OS once it returns (a killed process
        # loses nothing); fsync at checkpoints, so a power cut may lose the last
        # commits, as any FIX engine's file store would (docs/fix.md)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.store_kept = store_kept
        self.db.execute("BEGIN")

    def close(self) -> None:
        self.commit()
        self.db.close()

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    # -- position ---------------------------------------------------------------------

    def journal_seq(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='journal_seq'").fetchone()
        return row[0] if row else 0

    def set_journal_seq(self, seq: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('journal_seq', ?)", (seq,))

    # -- sessions ---------------------------------------------------------------------

    def sessions(self) -> dict[str, SessionState]:
        rows = self.db.execute("SELECT * FROM sessions").fetchall()
        return {row[0]: SessionState(*row) for row in rows}

    def save_session(self, s: SessionState) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (s.sender, s.account, s.name, s.kind, s.next_in, s.next_out),
        )

    def add_message(self, sender: str, seq: int, raw: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO messages VALUES (?, ?, ?)", (sender, seq, raw))
        if seq % 1024 == 0:  # keep the newest ``store_kept``
            self.db.execute(
                "DELETE FROM messages WHERE sender = ? AND seq <= ?",
                (sender, seq - self.store_kept),
            )

    def messages(self, sender: str, first: int, last: int) -> list[tuple[int, bytes]]:
        return self.db.execute(
            "SELECT seq, raw FROM messages WHERE sender = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (sender, first, last),
        ).fetchall()

    def forget_messages(self, sender: str) -> None:
        """A sequence reset (ResetSeqNumFlag): the old messages cannot be asked for."""
        self.db.execute("DELETE FROM messages WHERE sender = ?", (sender,))

    # -- orders -----------------------------------------------------------------------

    def load_book(self, orders_kept: int) -> Book:
        book = Book(orders_kept)
        for (data,) in self.db.execute("SELECT data FROM orders ORDER BY order_id"):
            book.add(Order(**json.loads(data)))
        for account, cl_ord_id, data in self.db.execute("SELECT * FROM pending"):
            book.pending[(account, cl_ord_id)] = Pending(**json.loads(data))
        row = self.db.execute("SELECT value FROM meta WHERE key='exec_ids'").fetchone()
        book.exec_ids = row[0] if row else 0
        book.dirty.clear()
        book.dropped.clear()
        return book

    def save_book(self, book: Book) -> None:
        db = self.db
        orders = book.orders
        db.executemany(
            "INSERT OR REPLACE INTO orders VALUES (?, ?)",
            [(oid, json.dumps(orders[oid].to_json())) for oid in book.dirty if oid in orders],
        )
        db.executemany("DELETE FROM orders WHERE order_id = ?", [(o,) for o in book.dropped])
        book.dirty.clear()
        book.dropped.clear()
        db.execute("INSERT OR REPLACE INTO meta VALUES ('exec_ids', ?)", (book.exec_ids,))

    def save_pending(self, account: int, cl_ord_id: str, pending: Pending | None) -> None:
        if pending is None:
            self.db.execute(
                "DELETE FROM pending WHERE account = ? AND cl_ord_id = ?", (account, cl_ord_id)
            )
            return
        data = json.dumps(
            {
                "sender": pending.sender,
                "kind": pending.kind,
                "orig_cl_ord_id": pending.orig_cl_ord_id,
                "order_id": pending.order_id,
            }
        )
        self.db.execute(
            "INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", (account, cl_ord_id, data)
        )

    def sync_pending(self, book: Book) -> None:
        """The pending requests added or answered since the last save."""
        for key in book.pending_changed:
            self.save_pending(*key, book.pending.get(key))
        book.pending_changed.clear()
