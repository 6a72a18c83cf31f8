"""`exchange journal verify`: a torn tail is told from corruption, by message and exit
code, on journals the tests write byte by byte."""

from __future__ import annotations

import json
import zlib

import pytest

from services.journal.segment import HEADER, segment_name
from services.journal.tools import VERIFY_CORRUPT, VERIFY_NO_JOURNAL, VERIFY_OK
from tests.mesh import exchange_cli, write_config
from tests.test_journal_segment import record


def entry(payload: bytes, crc: int | None = None) -> bytes:
    return HEADER.pack(len(payload), zlib.crc32(payload) if crc is None else crc) + payload


def entries(first: int, last: int) -> bytes:
    return b"".join(entry(record(seq)) for seq in range(first, last + 1))


def verify(tmp_path, directory, *flags: str):
    config_path = write_config(tmp_path)
    human = exchange_cli(
        "journal", "verify", str(directory), *flags, home=tmp_path, config_path=config_path
    )
    machine = exchange_cli(
        "journal", "verify", str(directory), "--json", home=tmp_path, config_path=config_path
    )
    assert machine.returncode == human.returncode, machine.stderr
    return human.returncode, human.stdout, json.loads(machine.stdout)


@pytest.fixture
def journal(tmp_path):
    directory = tmp_path / "journal"
    directory.mkdir()
    return directory


def write(directory, first: int, data: bytes) -> None:
    (directory / segment_name(first)).write_bytes(data)


def test_an_intact_journal_passes(tmp_path, journal):
    write(journal, 1, entries(1, 10))
    write(journal, 11, entries(11, 20) + bytes(300))  # a spare's unused zeros
    code, out, result = verify(tmp_path, journal)
    assert code == VERIFY_OK and out.startswith("OK: 20 records (seq 1..20) in 2 segments")
    assert "torn" not in out and result["status"] == "ok" and result["torn_tail"] is None


@pytest.mark.parametrize(
    "torn",
    [
        entry(record(21))[:5],  # a header cut short
        entry(record(21))[:-7],  # an entry cut short at the end of a plain file
        entry(record(21))[:-7] + bytes(500),  # ... in a preallocated one: a bad CRC
        bytes(8) + entry(record(21))[8:] + bytes(100),  # the header's page never landed
    ],
    ids=["header", "entry", "zeros", "hole"],
)
def test_a_torn_tail_is_noted_and_passes(tmp_path, journal, torn):
    write(journal, 1, entries(1, 10))
    write(journal, 11, entries(11, 20) + torn)
    code, out, result = verify(tmp_path, journal)
    assert code == VERIFY_OK, out
    assert out.startswith("OK: 20 records (seq 1..20)")
    tail = result["torn_tail"]
    size = len(torn.rstrip(b"\0"))
    assert f"torn tail: {size} bytes after seq 20" in out and "dropped on open" in out
    assert result["status"] == "torn-tail" and result["ok"] and result["errors"] == []
    assert (tail["segment"], tail["after_seq"], tail["bytes"]) == (segment_name(11), 20, size)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


@pytest.mark.parametrize(
    "segments, says",
    [
        # a record's byte flipped in the middle of the last segment, good records after
        ([entries(1, 10), flip(entries(11, 20), 30)], "bad CRC at offset 0 (after seq 10)"),
        # ... in a segment before the last, even as its very last entry
        ([flip(entries(1, 10), -3), entries(11, 20)], "not in the last segment"),
        # a CRC-valid entry that is no record, followed by good records
        ([entries(1, 10), entries(11, 15) + entry(b"\xc1") + entries(16, 20)], "undecodable"),
        # a record missing
        ([entries(1, 10), entries(11, 14) + entries(16, 20)], "seq 16 follows 14"),
        # a zeroed length: open would take the rest for a spare's zeros
        (
            [entries(1, 10), entries(11, 15) + bytes(4) + entries(16, 20)[4:]],
            "data after the end of the entries",
        ),
    ],
    ids=["crc", "earlier-segment", "undecodable", "gap", "zeroed-length"],
)
def test_corruption_fails_with_its_own_code(tmp_path, journal, segments, says):
    write(journal, 1, segments[0])
    write(journal, 11, segments[1])
    code, out, result = verify(tmp_path, journal)
    assert code == VERIFY_CORRUPT, out
    assert out.startswith("CORRUPT:") and says in out
    assert result["status"] == "corrupt" and not result["ok"] and result["torn_tail"] is None
    assert any(says in error for error in result["errors"])


def test_no_journal_is_an_error_of_its_own(tmp_path, journal):
    code, out, result = verify(tmp_path, tmp_path / "nowhere")
    assert code == VERIFY_NO_JOURNAL and "no such directory" in out
    assert result["status"] == "no-journal" and not result["ok"]
    (journal / "notes.txt").write_text("not a segment")
    code, out, result = verify(tmp_path, journal)
    assert code == VERIFY_NO_JOURNAL and "no journal here" in out
    assert result["status"] == "no-journal"


@pytest.mark.parametrize("command", ["replay", "dump"])
def test_replay_and_dump_refuse_a_folder_with_no_journal(tmp_path, journal, command):
    config_path = write_config(tmp_path)
    for path, says in ((tmp_path / "nowhere", "no such directory"), (journal, "no journal here")):
        done = exchange_cli("journal", command, str(path), home=tmp_path, config_path=config_path)
        assert done.returncode == VERIFY_NO_JOURNAL, done.stdout + done.stderr
        assert says in done.stderr and "replayed" not in done.stdout
