"""`exchange journal verify | dump | replay PATH`: the journal, offline.

These read segment files directly (the service need not run) and never write; they
read archived segments (``journal/archive/``) too, so they always see the whole history.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from services.common import config
from services.common.codec import record_decoder
from services.journal.segment import read_entries, segment_paths
from services.matcher.engine import Engine


def history(directory: Path) -> list[Path]:
    """Every segment from seq 1: the archived ones (``archive/``) and then the live
    ones, so the tools see the whole history whether or not the journal archived."""
    return sorted(
        segment_paths(directory / "archive") + segment_paths(directory), key=lambda p: p.name
    )


def verify(directory: Path) -> dict:
    """CRCs and sequence continuity across every segment."""
    result = {
        "ok": True,
        "records": 0,
        "first_seq": 0,
        "last_seq": 0,
        "segments": 0,
        "epochs": [],
        "errors": [],
    }
    epochs: set[int] = set()
    last = 0
    for path in history(directory):
        result["segments"] += 1
        for item in read_entries(path):
            if isinstance(item, tuple):
                result["errors"].append(f"{path.name}: {item[1]} at offset {item[0]}")
                break
            if last and item.seq != last + 1:
                result["errors"].append(f"{path.name}: seq {item.seq} follows {last}")
            last = item.seq
            result["first_seq"] = result["first_seq"] or item.seq
            result["records"] += 1
            epochs.add(item.epoch)
    result["last_seq"] = last
    result["epochs"] = sorted(epochs)
    result["ok"] = not result["errors"]
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
    else:
        print(
            f"{'OK' if result['ok'] else 'FAILED'}: {result['records']} records "
            f"(seq {result['first_seq']}..{result['last_seq']}) in {result['segments']} "
            f"segments, epochs {result['epochs']}"
        )
        for error in result["errors"]:
            print(f"  {error}")
    return 0 if result["ok"] else 1


def _dump_cmd(args: argparse.Namespace) -> int:
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
    p = subparsers.add_parser("verify", help="check CRCs and sequence continuity")
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
