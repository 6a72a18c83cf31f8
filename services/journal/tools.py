"""`exchange journal verify | dump | replay PATH`: the journal, offline.

These read segment files directly (the service need not run) and never write; they
read archived segments (``journal/archive/``) too, so they always see the whole history.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgspec

from services.common import config
from services.common.codec import record_decoder
from services.journal.segment import (
    HEADER,
    SUFFIX,
    Entry,
    parse_entries,
    read_entries,
    segment_paths,
)
from services.matcher.engine import Engine


def history(directory: Path) -> list[Path]:
    """Every segment from seq 1: the archived ones (``archive/``) and then the live
    ones, so the tools see the whole history whether or not the journal archived."""
    return sorted(
        segment_paths(directory / "archive") + segment_paths(directory), key=lambda p: p.name
    )


# `exchange journal verify` exit codes (docs/cli.md): a torn tail is no error, since
# opening the journal drops it; corruption is
VERIFY_OK = 0
VERIFY_CORRUPT = 1
VERIFY_NO_JOURNAL = 4
AFTER_END = "data after the end of the entries"  # past a zero length: a spare's zeros
TORN = ("torn header", "torn entry", "bad CRC", AFTER_END)  # what a cut-short write leaves


def _whole_entry_after(data: bytes, offset: int) -> bool:
    """True if a whole, CRC-valid, decodable entry starts anywhere after ``offset``:
    then what is wrong at ``offset`` is not the tail of an interrupted write."""
    if offset + HEADER.size <= len(data):  # first where the bad entry says it ends
        length = HEADER.unpack_from(data, offset)[0]
        after = offset + HEADER.size + length
        if length > 0 and after < len(data) and _entry_at(data, after):
            return True
    end = len(data.rstrip(b"\0"))  # an entry's header is not all zeros
    return any(_entry_at(data, at) for at in range(offset + 1, end))


def _entry_at(data: bytes, offset: int) -> bool:
    item = next(parse_entries(data, offset), None)
    return isinstance(item, Entry) and item.offset == offset


def missing(directory: Path) -> str | None:
    """Why ``directory`` holds no journal (no such directory, no segment files), or
    None: every journal command refuses such a path rather than report on nothing."""
    directory = Path(directory)
    if not directory.is_dir():
        return f"{directory}: no such directory"
    if not history(directory):
        return f"{directory}: no journal here (no *{SUFFIX} files in it or in archive/)"
    return None


def verify(directory: Path) -> dict:
    """CRCs, sequence continuity and segment names across every segment, telling a
    torn tail (the last live segment's partial last write, which opening the journal
    drops) from corruption (anything wrong with whole records behind it)."""
    result = {
        "ok": True,
        "status": "ok",
        "records": 0,
        "first_seq": 0,
        "last_seq": 0,
        "segments": 0,
        "epochs": [],
        "errors": [],
        "torn_tail": None,
    }
    directory = Path(directory)
    why = missing(directory)
    if why:
        result.update(ok=False, status="no-journal", errors=[why])
        return result
    paths = history(directory)
    live = segment_paths(directory)
    tail_segment = live[-1] if live else None
    errors: list[str] = result["errors"]
    epochs: set[int] = set()
    last = 0
    for path in paths:
        result["segments"] += 1
        data = path.read_bytes()
        end = 0  # of the last whole entry
        problem: tuple[int, str] | None = None
        for item in parse_entries(data):
            if isinstance(item, tuple):
                problem = item
                break
            if end == 0 and item.seq != int(path.stem):
                errors.append(f"{path.name}: named for seq {int(path.stem)}, begins at {item.seq}")
            if last and item.seq != last + 1:
                errors.append(f"{path.name}: seq {item.seq} follows {last} at offset {item.offset}")
            last = item.seq
            result["first_seq"] = result["first_seq"] or item.seq
            result["records"] += 1
            epochs.add(item.epoch)
            end = item.offset + HEADER.size + len(item.payload)
        if problem is None and any(data[end:]):  # bytes after a zero length
            problem = (end, AFTER_END)
        if problem is None:
            continue
        offset, reason = problem
        where = f"{path.name}: {reason} at offset {offset} (after seq {last})"
        if path != tail_segment:
            errors.append(f"{where}, not in the last segment")
        elif _whole_entry_after(data, offset):
            errors.append(
                f"{where}, followed by whole records: not a torn write; opening the "
                f"journal would drop everything from offset {offset} on"
            )
        elif reason not in TORN:
            errors.append(where)  # a CRC-valid record that does not decode
        else:
            torn = len(data.rstrip(b"\0")) - offset
            result["torn_tail"] = {
                "segment": path.name,
                "offset": offset,
                "bytes": torn,
                "after_seq": last,
                "reason": reason,
            }
    result["last_seq"] = last
    result["epochs"] = sorted(epochs)
    if errors:
        result.update(ok=False, status="corrupt")
    elif result["torn_tail"]:
        result["status"] = "torn-tail"
    return result


def records(directory: Path):
    for path in history(directory):
        for item in read_entries(path):
            if isinstance(item, tuple):
                return
            yield record_decoder.decode(item.payload)


def rebuild(directory: Path, cfg: config.Config) -> Engine:
    """The engine state the journal describes."""
    return _replay(directory, cfg)[0]


def replay(directory: Path, cfg: config.Config) -> dict:
    """Apply every command to a fresh engine; each must give the journaled events."""
    engine, count, last, mismatch = _replay(directory, cfg)
    return {
        "records": count,
        "last_seq": last,
        "state_hash": engine.state_hash(),
        "mismatch": mismatch,
    }


def _replay(directory: Path, cfg: config.Config) -> tuple[Engine, int, int, dict | None]:
    engine = Engine(cfg.symbols, cfg.risk)
    count = last = 0
    mismatch = None
    for record in records(directory):
        events = engine.apply(record.command)
        if mismatch is None and events != record.events:
            mismatch = {
                "seq": record.seq,
                "journal": msgspec.to_builtins(record.events),
                "replay": msgspec.to_builtins(events),
            }
        count += 1
        last = record.seq
    return engine, count, last, mismatch


def _verify_cmd(args: argparse.Namespace) -> int:
    result = verify(Path(args.path))
    if args.json:
        print(json.dumps(result))
    elif result["status"] == "no-journal":
        print(f"NO JOURNAL: {result['errors'][0]}")
    else:
        verdict = {"ok": "OK", "torn-tail": "OK", "corrupt": "CORRUPT"}[result["status"]]
        print(
            f"{verdict}: {result['records']} records "
            f"(seq {result['first_seq']}..{result['last_seq']}) in {result['segments']} "
            f"segments, epochs {result['epochs']}"
        )
        torn = result["torn_tail"]
        if torn:
            print(
                f"  torn tail: {torn['bytes']} bytes after seq {torn['after_seq']} "
                f"({torn['reason']} at offset {torn['offset']} of {torn['segment']}) will be "
                f"dropped on open: the end of a write a crash cut short, never committed"
            )
        for error in result["errors"]:
            print(f"  {error}")
    if result["status"] == "no-journal":
        return VERIFY_NO_JOURNAL
    return VERIFY_CORRUPT if result["status"] == "corrupt" else VERIFY_OK


def _refuse_missing(path: str) -> bool:
    why = missing(Path(path))
    if why:
        print(f"NO JOURNAL: {why}", file=sys.stderr)
    return why is not None


def _dump_cmd(args: argparse.Namespace) -> int:
    if _refuse_missing(args.path):
        return VERIFY_NO_JOURNAL
    shown = 0
    for record in records(Path(args.path)):
        if record.seq < args.start:
            continue
        if args.count and shown >= args.count:
            break
        shown += 1
        if args.json:
            print(json.dumps(msgspec.to_builtins(record)))
        else:
            events = "; ".join(repr(e) for e in record.events)
            print(f"{record.seq} e{record.epoch} {record.command!r} -> {events}")
    return 0


def _replay_cmd(args: argparse.Namespace) -> int:
    if _refuse_missing(args.path):
        return VERIFY_NO_JOURNAL
    cfg = config.load(args.config)
    result = replay(Path(args.path), cfg)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"replayed {result['records']} records up to seq {result['last_seq']}")
        print(f"state hash {result['state_hash']}")
        if result["mismatch"]:
            print(f"MISMATCH at seq {result['mismatch']['seq']}")
    return 1 if result["mismatch"] else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check CRCs and sequence continuity: exit 0 intact (a torn tail is noted), "
        "1 corrupt, 4 no journal there",
    )
    p.add_argument("path", help="journal directory ($EXCHANGE_HOME/journal)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify_cmd)
    p = subparsers.add_parser("dump", help="one line per record")
    p.add_argument("path")
    p.add_argument("--from", dest="start", type=int, default=0)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_dump_cmd)
    p = subparsers.add_parser("replay", help="rebuild the state and print its hash")
    p.add_argument("path")
    p.add_argument("--config", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_replay_cmd)
