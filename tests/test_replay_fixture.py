"""A journal written by an earlier version of the exchange replays, under today's code
and the default configuration, to the state hash that version recorded.

tests/fixtures/journal-v1 was written by a real mesh of the services as they were
before the shared runtime (commit 8e390c7, with the engine as it is now), by its
make_fixture.py, running a
scenario with every command and event kind: sign-ups with opening cash, limit, market,
IOC and FOK orders, trades, a replace, a cancel, a duplicate, a band reject, a
volatility pause and its reopen, a deposit, a halt and resume, a new reference, a kill
and unkill, a password change. A refactor that changes what any of them does, or how a
record decodes, fails here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.mesh import exchange_cli

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "journal-v1"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "default.toml"


def test_the_v1_journal_replays_to_its_recorded_state_hash(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    journal = tmp_path / "journal"
    shutil.copytree(FIXTURE / "journal", journal)  # the tools may tidy what they open
    run = lambda *args: exchange_cli(  # noqa: E731
        "journal", *args, home=tmp_path, config_path=DEFAULT_CONFIG
    )
    verify = run("verify", str(journal))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replay = run("replay", str(journal), "--json", "--config", str(DEFAULT_CONFIG))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    result = json.loads(replay.stdout)
    assert result["mismatch"] is None
    assert (result["last_seq"], result["state_hash"]) == (
        expected["last_seq"],
        expected["state_hash"],
    )
