"""The journal on disk: append-only segment files of CRC-framed records.

Each entry is a 4-byte big-endian length, a 4-byte CRC32 of the payload, and the
payload: one encoded Record, exactly as the matcher encoded it. Segments are named by
the first sequence number they hold and roll over before ``segment_bytes``. A segment
begins life as a preallocated spare (``spare.py``): zeros past the last entry, which
a zero length marks, are room to write, not data. Opening a store checks every CRC
and the sequence continuity; a torn or corrupt tail of the *last* segment (a write
cut short by a crash) is truncated, anything else is refused.
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
    offset = 0
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
    """Appends records, fsyncs on demand, and reads ranges by sequence number."""

    def __init__(
        self, directory: Path, segment_bytes: int = 64 * 1024 * 1024, preallocate: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.last_seq = 0
        self.last_epoch = 0
        self.first_seq = 1  # the oldest record kept here; older ones are archived
        self.truncated: str | None = None
        self.index: list[tuple[int, Path, int]] = []  # (seq, segment, offset), sparse
        # the newest records' bytes, the last one being ``last_seq`` (seqs are
        # contiguous, so no seq is stored: a tuple per record would be tracked by the
        # garbage collector, and 50,000 of them made each young collection a 6 ms pause)
        self.cache: deque[bytes] = deque(maxlen=CACHE_RECORDS)
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._preallocated = False  # the open segment was a spare: zeros past _size
        self.spare = Spare(self.directory, segment_bytes) if preallocate else None
        self._open()
        if self.spare is not None:
            self.spare.prepare()

    def _open(self) -> None:
        paths = segment_paths(self.directory)
        for i, path in enumerate(paths):
            last = i == len(paths) - 1
            end = 0  # of the last whole entry
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
            if last and path.stat().st_size > end:
                # a torn write or a spare's unused zeros: appending goes on from ``end``
                with path.open("r+b") as fh:
                    fh.truncate(end)
                    os.fsync(fh.fileno())
        if paths:
            self.first_seq = int(paths[0].stem)
            self._path = paths[-1]
            self._file = self._path.open("ab")
            self._size = self._path.stat().st_size

    def _note(self, seq: int, epoch: int, payload: bytes, path: Path, offset: int) -> None:
        if seq % INDEX_EVERY == 1 or not self.index or self.index[-1][1] != path:
            self.index.append((seq, path, offset))
        self.cache.append(payload)
        self.last_seq = seq
        self.last_epoch = max(self.last_epoch, epoch)

    def append(self, seq: int, epoch: int, payload: bytes) -> None:
        """Buffered append; durable only after ``sync``."""
        if self.last_seq and seq != self.last_seq + 1:
            raise ValueError(f"seq {seq} does not follow {self.last_seq}")
        if self._file is None or self._full(HEADER.size + len(payload)):
            self._roll(seq)
        offset = self._size
        self._file.write(HEADER.pack(len(payload), zlib.crc32(payload)))
        self._file.write(payload)
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
        if self._file is not None:
            self._seal()
        self._path = self.directory / segment_name(first_seq)
        self._preallocated = self.spare is not None and self.spare.take(self._path)
        self._file = self._path.open("r+b" if self._preallocated else "ab")
        self._size = 0
        sync_dir(self.directory)

    def _seal(self) -> None:
        """Sync and close the open segment, cut to its entries (a spare's unused zeros
        go, so a finished segment holds records only)."""
        self._file.flush()
        if self._preallocated:
            self._file.truncate(self._size)
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def sync(self, fsync: bool = True) -> None:
        """Write out buffered entries; with ``fsync``, make them durable. Only the data
        needs flushing: a preallocated segment's size never changes."""
        if self._file is not None:
            self._file.flush()
            if fsync:
                sync_data(self._file.fileno())

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
        archive.mkdir(exist_ok=True)
        for path in moved:
            os.replace(path, archive / path.name)
        for where in (archive, self.directory):  # both renames durable
            sync_dir(where)
        self.index = [entry for entry in self.index if entry[1] not in moved]
        self.first_seq = int(paths[len(moved)].stem)
        return moved

    def read(self, first: int, count: int) -> list[bytes]:
        """Encoded records ``first`` .. ``first + count - 1`` that exist."""
        if first < 1 or count <= 0 or first > self.last_seq:
            return []
        last = min(self.last_seq, first + count - 1)
        base = self.last_seq - len(self.cache) + 1  # seq of the oldest cached record
        if self.cache and base <= first:
            return [self.cache[i] for i in range(first - base, last - base + 1)]
        return self._read_disk(first, last)

    def _read_disk(self, first: int, last: int) -> list[bytes]:
        self.sync(fsync=False)
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
        if self._file is not None:
            self._seal()
        if self.spare is not None:
            self.spare.close()
