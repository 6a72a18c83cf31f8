"""The journal on disk: append-only segment files of CRC-framed records.

Each entry is a 4-byte big-endian length, a 4-byte CRC32 of the payload, and the
payload: one encoded Record, exactly as the matcher encoded it. Segments are named by
the first sequence number they hold and roll over before ``segment_bytes``. A segment
begins life as a preallocated spare (``spare.py``): zeros past the last entry, which
a zero length marks, are room to write, not data. Opening a store checks every CRC
and the sequence continuity; a torn or corrupt tail of the *last* segment (a write
cut short by a crash) is truncated, anything else is refused. What a crashed journal
left may still be only in the page cache, so opening syncs the last segment and the
directory before it counts a record in them as committed.

Files are created 0600 and the directory kept 0700: the journal holds every account's
orders and password hashes.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common.codec import head_decoder
from services.common.snapfile import sync_data
from services.journal.spare import Spare

HEADER = struct.Struct(">II")
SUFFIX = ".seg"
INDEX_EVERY = 256  # records between sparse index points
CACHE_RECORDS = 50_000  # recent records kept in memory for followers' range reads
MAX_ENTRY = 64 * 1024 * 1024
FILE_MODE = 0o600
DIR_MODE = 0o700


class CorruptJournal(RuntimeError):
    pass


@dataclass
class Entry:
    seq: int
    epoch: int
    payload: bytes
    offset: int  # of the entry's header in its segment


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def private_dir(directory: Path) -> None:
    """Create ``directory`` (0700), or take group and other access off an existing one."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        os.chmod(directory, DIR_MODE)


def sync_dir(directory: Path) -> None:
    """Make the names in ``directory`` durable (a new segment, a rename)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_entries(path: Path) -> Iterator[Entry | tuple[int, str]]:
    """Entries of one segment in order; a final ``(offset, reason)`` if it ends badly.
    A zero length ends the entries: what follows is a spare's unused zeros."""
    with path.open("rb") as fh:
        data = fh.read()
    return parse_entries(data)


def parse_entries(data: bytes, offset: int = 0) -> Iterator[Entry | tuple[int, str]]:
    """``read_entries`` over a segment's bytes, from ``offset``."""
    while offset < len(data):
        if offset + HEADER.size > len(data):
            if any(data[offset:]):
                yield (offset, "torn header")
            return
        length, crc = HEADER.unpack_from(data, offset)
        if length == 0:
            return
        start = offset + HEADER.size
        payload = data[start : start + length]
        if length > MAX_ENTRY or len(payload) < length:
            yield (offset, "torn entry")
            return
        if zlib.crc32(payload) != crc:
            yield (offset, "bad CRC")
            return
        try:
            head = head_decoder.decode(payload)
        except Exception:  # noqa: BLE001 - a CRC-valid but undecodable entry is corrupt
            yield (offset, "undecodable record")
            return
        yield Entry(head.seq, head.epoch, payload, offset)
        offset = start + length


class JournalStore:
    """Appends records, fsyncs on demand, and reads ranges by sequence number.

    Appends collect in memory and reach the file in one write at ``sync``. A failed
    write or sync (a full disk) is undone by ``rollback``: the store goes back to
    where its last successful sync left it, on disk and in memory, so the caller can
    fetch the same records again later and nothing is ever written twice."""

    def __init__(
        self,
        directory: Path,
        segment_bytes: int = 64 * 1024 * 1024,
        preallocate: bool = True,
        reserve_bytes: int = 0,
        retry_s: float = 1.0,
    ) -> None:
        self.directory = Path(directory)
        private_dir(self.directory)
        self.segment_bytes = segment_bytes
        self.last_seq = 0
        self.last_epoch = 0
        self.first_seq = 1  # the oldest record kept here; older ones are archived
        self.truncated: str | None = None
        self.index: list[tuple[int, Path, int]] = []  # (seq, segment, offset), sparse
        # (epoch, first seq) of every epoch in the live segments: how a new primary
        # tells which records of this log match its own (``history.py``)
        self.epochs: list[tuple[int, int]] = []
        # the newest records' bytes, the last one being ``last_seq`` (seqs are
        # contiguous, so no seq is stored: a tuple per record would be tracked by the
        # garbage collector, and 50,000 of them made each young collection a 6 ms pause)
        self.cache: deque[bytes] = deque(maxlen=CACHE_RECORDS)
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # entries in the open segment, pending ones included
        self._pending = bytearray()  # appended, not yet written: the file's last bytes
        self._preallocated = False  # the open segment was a spare: zeros past _size
        self.spare = (
            Spare(self.directory, segment_bytes, reserve_bytes, retry_s) if preallocate else None
        )
        self._open()
        self._synced()
        if self.spare is not None:
            self.spare.prepare()

    def _open(self) -> None:
        paths = segment_paths(self.directory)
        end = 0  # of the last whole entry in the segment being read
        for i, path in enumerate(paths):
            last = i == len(paths) - 1
            end = 0
            for item in read_entries(path):
                if isinstance(item, tuple):
                    offset, reason = item
                    if not last:
                        raise CorruptJournal(f"{path.name}: {reason} at offset {offset}")
                    self.truncated = f"{path.name}: dropped a {reason} at offset {offset}"
                    break
                if self.last_seq and item.seq != self.last_seq + 1:
                    raise CorruptJournal(f"{path.name}: seq {item.seq} follows {self.last_seq}")
                self._note(item.seq, item.epoch, item.payload, path, item.offset)
                end = item.offset + HEADER.size + len(item.payload)
            if path.stat().st_mode & 0o077:  # written by a version that made them 0644
                os.chmod(path, FILE_MODE)
        if paths:
            self.first_seq = int(paths[0].stem)
            self._path = paths[-1]
            self._fd = os.open(self._path, os.O_WRONLY)
            if os.fstat(self._fd).st_size > end:
                # a torn write or a spare's unused zeros: appending goes on from ``end``
                os.ftruncate(self._fd, end)
            # a crashed journal's last writes may be in the page cache only: they count
            # as committed (beats, range reads, a new primary's catch-up) once on disk
            os.fsync(self._fd)
            self._size = end
        sync_dir(self.directory)

    def _note(self, seq: int, epoch: int, payload: bytes, path: Path, offset: int) -> None:
        if seq % INDEX_EVERY == 1 or not self.index or self.index[-1][1] != path:
            self.index.append((seq, path, offset))
        self.cache.append(payload)
        self.last_seq = seq
        self.last_epoch = max(self.last_epoch, epoch)
        if not self.epochs or self.epochs[-1][0] != epoch:
            self.epochs.append((epoch, seq))

    def append(self, seq: int, epoch: int, payload: bytes) -> None:
        """Buffered append; durable only after ``sync``."""
        if self.last_seq and seq != self.last_seq + 1:
            raise ValueError(f"seq {seq} does not follow {self.last_seq}")
        if self._fd is None or self._full(HEADER.size + len(payload)):
            self._roll(seq)
        offset = self._size
        self._pending += HEADER.pack(len(payload), zlib.crc32(payload))
        self._pending += payload
        self._size += HEADER.size + len(payload)
        self._note(seq, epoch, payload, self._path, offset)

    def _full(self, size: int) -> bool:
        """Time for a new segment: this one cannot take ``size`` more bytes, or it is
        a plain file (the first, or one reopened) and a preallocated spare is ready."""
        if self._size == 0:
            return False
        if self._size + size > self.segment_bytes:
            return True
        return not self._preallocated and self.spare is not None and self.spare.ready()

    def _roll(self, first_seq: int) -> None:
        if self._fd is not None:
            self._seal()
        self._path = self.directory / segment_name(first_seq)
        self._size = 0
        self._preallocated = self.spare is not None and self.spare.take(self._path)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        sync_dir(self.directory)

    def _write(self) -> None:
        """Write the pending entries at the end of the open segment's entries."""
        pending = self._pending
        if not pending:
            return
        offset = self._size - len(pending)
        done = os.pwrite(self._fd, pending, offset)
        if done < len(pending):  # cut short (a nearly full disk): write the rest
            with memoryview(pending) as view:
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], offset + done)
        pending.clear()

    def _seal(self) -> None:
        """Sync and close the open segment, cut to its entries (a spare's unused zeros
        go, so a finished segment holds records only)."""
        self._write()
        if self._preallocated:
            os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None

    def sync(self, fsync: bool = True) -> None:
        """Write out pending entries; with ``fsync``, make them durable. Only the data
        needs flushing: a preallocated segment's size never changes."""
        if self._fd is not None:
            self._write()
            if fsync:
                sync_data(self._fd)
        self._synced()

    def _synced(self) -> None:
        """Note where the last successful sync left the store: ``rollback`` returns
        here. Plain attributes: an object per commit would feed the garbage collector."""
        self.durable_seq = self.last_seq  # the last record a reader may be given
        self._durable_epoch = self.last_epoch
        self._durable_path = self._path
        self._durable_size = self._size

    def rollback(self) -> None:
        """Undo everything appended since the last ``sync`` that succeeded: after a
        failed write or sync (ENOSPC, EIO). Segments begun since are removed and the
        open one is cut back to its synced entries, durably, so whatever a failed
        write left can never be read as records; the records themselves are fetched
        again from their source once the disk has room. The kernel may have dropped
        pages a failed sync could not write, so nothing is retried from the page
        cache: the next attempt writes every byte again."""
        path, size, seq = self._durable_path, self._durable_size, self.durable_seq
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._pending.clear()
        for begun in segment_paths(self.directory):
            if path is None or begun.name > path.name:
                begun.unlink()
        self._path, self._size, self._preallocated = path, size, False
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY)
            os.ftruncate(self._fd, size)  # frees blocks: needs no space
            os.fsync(self._fd)
        sync_dir(self.directory)
        for _ in range(min(self.last_seq - seq, len(self.cache))):
            self.cache.pop()
        self.index = [entry for entry in self.index if entry[0] <= seq]
        self.epochs = [entry for entry in self.epochs if entry[1] <= seq]
        self.last_seq, self.last_epoch = seq, self._durable_epoch

    def truncate(self, last: int) -> None:
        """Cut every record after ``last``, durably: records of a deposed epoch that a
        new primary's log does not hold (they never reached a majority, so nobody was
        told of them). Rare (after a failover), so the store simply opens again."""
        if last >= self.last_seq:
            return
        if last < self.first_seq - 1:
            raise ValueError(f"cannot cut to {last}: records from {self.first_seq} are kept")
        self._write()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        kept = []
        for path in segment_paths(self.directory):
            if int(path.stem) > last:
                path.unlink()
            else:
                kept.append(path)
        if kept:  # cut the segment holding ``last`` after it
            end = 0
            for item in read_entries(kept[-1]):
                if isinstance(item, tuple) or item.seq > last:
                    break
                end = item.offset + HEADER.size + len(item.payload)
            fd = os.open(kept[-1], os.O_WRONLY)
            try:
                os.ftruncate(fd, end)
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(self.directory)
        self.last_seq = self.last_epoch = self._size = 0
        self.index, self.epochs, self._path = [], [], None
        self.cache.clear()
        self._preallocated = False
        self._open()
        self._synced()

    def archived(self, seq: int) -> bool:
        """True when record ``seq`` was archived: this journal can no longer serve it."""
        return seq < self.first_seq

    def archive(self, upto: int) -> list[Path]:
        """Move to ``archive/`` every segment whose records are all at or below ``upto``
        (never the segment being written). What is moved stays on disk for audit and
        for replay from scratch, but range reads below ``first_seq`` are refused."""
        paths = segment_paths(self.directory)
        moved: list[Path] = []
        for path, following in zip(paths, paths[1:], strict=False):
            if int(following.stem) - 1 > upto:
                break
            moved.append(path)
        if not moved:
            return []
        archive = self.directory / "archive"
        private_dir(archive)
        for path in moved:
            os.replace(path, archive / path.name)
        for where in (archive, self.directory):  # both renames durable
            sync_dir(where)
        self.index = [entry for entry in self.index if entry[1] not in moved]
        self.first_seq = int(paths[len(moved)].stem)
        return moved

    def read(self, first: int, count: int) -> list[bytes]:
        """Encoded records ``first`` .. ``first + count - 1`` that exist and are synced:
        a reader never gets a record a failed sync may yet take back."""
        top = self.durable_seq
        if first < 1 or count <= 0 or first > top:
            return []
        last = min(top, first + count - 1)
        base = self.last_seq - len(self.cache) + 1  # seq of the oldest cached record
        if self.cache and base <= first:
            return [self.cache[i] for i in range(first - base, last - base + 1)]
        return self._read_disk(first, last)

    def _read_disk(self, first: int, last: int) -> list[bytes]:
        start = max((i for i in self.index if i[0] <= first), key=lambda i: i[0])
        out: list[bytes] = []
        paths = [p for p in segment_paths(self.directory) if p >= start[1]]
        for n, path in enumerate(paths):
            with path.open("rb") as fh:
                if n == 0:
                    fh.seek(start[2])
                data = fh.read()
            offset = 0
            while offset + HEADER.size <= len(data):
                length, _ = HEADER.unpack_from(data, offset)
                if length == 0:
                    break  # a spare's unused zeros
                payload = data[offset + HEADER.size : offset + HEADER.size + length]
                offset += HEADER.size + length
                seq = head_decoder.decode(payload).seq
                if seq > last:
                    return out
                if seq >= first:
                    out.append(payload)
        return out

    def close(self) -> None:
        if self._fd is not None:
            self._seal()
        if self.spare is not None:
            self.spare.close()
