"""The day's trade and cash movement lines, on disk until the day's statements are made.

A day can hold far more trades than fit in memory, so the ledger keeps only totals and
appends each trade (one per fill side) and cash movement here as a line, buffered and
never synced: a restart replays the day under way from the saved carry and rebuilds the
spool from scratch, so the spool is cleared at start and a fresh file begins with each
day (``DIR/FIRST_SEQ.lines``).

At the day's end ``by_account`` gives the lines back grouped by account (accounts in
order, each one's trades then its movements, each in the day's order) holding at most
``budget`` lines in memory: an external merge sort. Runs of ``budget`` lines are sorted
and written beside the spool, then merged ``FAN_IN`` at a time (so the open files stay
bounded too) until one merge yields them all. Reading costs about log(lines / budget)
passes over the day's lines, not one pass per group of accounts.

A line: the account as fixed-width digits, its kind (trades sort first), the item as a
JSON array; the fixed-width prefix is the sort key, and Python's sort and ``heapq.merge``
are stable, which keeps each account's lines in the day's order.
"""

from __future__ import annotations

import heapq
import itertools
import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import msgspec

from services.statements.ledger import Movement, Trade

LINES_IN_MEMORY = 200_000  # the most lines held while sorting a day's spool
FAN_IN = 64  # runs merged at once (open files)
BUFFER = 1 << 20
SUFFIX = ".lines"
ACCOUNT = 20  # digits: any u64 account id
KEY = ACCOUNT + 2  # account, a space, the kind
TRADE, MOVEMENT = b"0", b"1"
_encode = msgspec.json.Encoder().encode
_trade = msgspec.json.Decoder(Trade).decode
_movement = msgspec.json.Decoder(Movement).decode


class Spool:
    """Where the ledger puts the day's lines: one file per day, written as they come."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)  # the day under way is replayed anyway
        directory.mkdir(mode=0o700, parents=True)
        self.path: Path | None = None
        self.file = None

    def begin(self, first_seq: int) -> None:
        self.close()
        self.path = self.directory / f"{first_seq}{SUFFIX}"
        self.file = self.path.open("wb", buffering=BUFFER)

    def add(self, account: int, item: Trade | Movement) -> None:
        kind = TRADE if type(item) is Trade else MOVEMENT
        self.file.write(b"%020d %s %s\n" % (account, kind, _encode(item)))

    def end(self, keep: bool) -> Path | None:
        """Close the day's file: its path to read it from, or removed if not ``keep``."""
        path = self.path
        self.close()
        if not keep and path is not None:
            path.unlink(missing_ok=True)
            return None
        return path

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _key(line: bytes) -> bytes:
    return line[:KEY]


def _merged(runs: list[Path]) -> Iterator[bytes]:
    with ExitStack() as files:
        yield from heapq.merge(*(files.enter_context(r.open("rb")) for r in runs), key=_key)


def _write_run(path: Path, lines: Iterable[bytes]) -> Path:
    with path.open("wb", buffering=BUFFER) as fh:
        fh.writelines(lines)
    return path


def sorted_lines(
    path: Path, budget: int = LINES_IN_MEMORY, fan_in: int = FAN_IN
) -> Iterator[bytes]:
    """The spool's lines sorted by account then kind, stable (see the module's docstring)."""
    work = path.with_name(path.name + ".runs")
    names = (work / str(n) for n in itertools.count())
    runs: list[Path] = []
    try:
        with path.open("rb", buffering=BUFFER) as fh:
            while chunk := list(itertools.islice(fh, budget)):
                chunk.sort(key=_key)
                if not runs and len(chunk) < budget:  # the whole day fits: no runs
                    yield from chunk
                    return
                work.mkdir(mode=0o700, exist_ok=True)
                runs.append(_write_run(next(names), chunk))
                del chunk
        while len(runs) > fan_in:
            groups = [runs[i : i + fan_in] for i in range(0, len(runs), fan_in)]
            runs = []
            for group in groups:  # consecutive groups: the merge stays stable
                runs.append(_write_run(next(names), _merged(group)))
                for run in group:
                    run.unlink()
        yield from _merged(runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _item(line: bytes) -> Trade | Movement:
    kind = line[ACCOUNT + 1 : KEY]
    return (_trade if kind == TRADE else _movement)(line[KEY + 1 :])


def by_account(
    path: Path, budget: int = LINES_IN_MEMORY
) -> Iterator[tuple[int, Iterator[Trade | Movement]]]:
    """Each account with lines, in order, and its trades then movements as they came
    (each group is to be read before the next)."""
    grouped = itertools.groupby(sorted_lines(path, budget), key=lambda line: line[:ACCOUNT])
    for account, lines in grouped:
        yield int(account), map(_item, lines)


def remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)
