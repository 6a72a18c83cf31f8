"""The shipped configurations, typed loading, and what the start refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.common import config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_config_funds_accounts_and_allows_shorts(tmp_path):
    risk = config.load(ROOT / "config" / "default.toml", home=tmp_path).risk
    assert risk.opening_cash == 100_000_000 * 10_000
    assert risk.short_limit == risk.max_position


def test_production_example_opens_accounts_empty_and_forbids_shorts(tmp_path):
    cfg = config.load(ROOT / "config" / "production.example.toml", home=tmp_path)
    assert cfg.risk.opening_cash == 0 and cfg.risk.short_limit == 0
    assert cfg.symbols.keys() == config.load(home=tmp_path).symbols.keys()


@pytest.mark.parametrize(
    "override, words",
    [
        ({"max_price": "1000000000000.00"}, "int64"),  # price x position could overflow
        ({"max_cash": "1000000000000000.00"}, "int64"),
        # a price level's total size (64 bits in the compiled engine) even at a tiny price
        ({"max_order_qty": 2**31, "max_price": "0.01", "max_position": 2**31}, "max_order_qty"),
        ({"short_limit": 2_000_000}, "short_limit"),
        ({"opening_cash": "-1.00"}, "opening_cash"),
    ],
)
def test_limits_that_could_overflow_stop_the_start(tmp_path, override, words):
    raw = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    raw.setdefault("risk", {}).update(override)
    with pytest.raises(config.ConfigError, match=words):
        config.parse(raw, tmp_path)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[timings]\nheartbeat_ms = 'fast'\n", r"\[timings\].*heartbeat_ms"),
        ("[journal]\nfsync_please = true\n", r"\[journal\]: unknown key 'fsync_please'"),
        ("[nonsense]\nx = 1\n", "unknown section"),
        ("[symbols.X]\ntick = '0.01'\nreference = '1.00'\nlots = 2\n", "unknown key 'lots'"),
        ("[symbols.X]\ntick = '0.01'\n", r"\[symbols.X\]: reference is required"),
        ("[risk]\ndefault_stp = 'never'\n", "default_stp"),
        ("[risk]\nopening_cash = 'lots'\n", r"\[risk\] opening_cash"),
    ],
)
def test_unknown_keys_and_bad_values_name_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    symbols = "" if "[symbols" in text else "[symbols.A]\ntick = '0.01'\nreference = '1.00'\n"
    path.write_text(symbols + text)
    with pytest.raises(config.ConfigError, match=words):
        config.load(path, home=tmp_path)


def test_defaults_live_in_code_and_the_file_only_overrides(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text("[symbols.A]\ntick = '0.01'\nreference = '1.00'\n[timings]\nmissed_beats = 9\n")
    cfg = config.load(path, home=tmp_path)
    assert cfg.timings == config.Timings(missed_beats=9)
    assert cfg.journal == config.Journal() and cfg.risk == config.RiskLimits()
    assert cfg.endpoints.journal_read == f"ipc://{tmp_path}/run/journal-read"
    assert cfg.security.curve_dir == f"{tmp_path}/keys"


def test_every_key_is_documented_with_its_default():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    shown = config.effective(config.Config(symbols={}, home=Path("HOME")))
    missing = []
    for section, values in shown.items():
        if not isinstance(values, dict) or section == "symbols":
            continue
        for key, value in values.items():
            row = f"| `{key}` | `{json.dumps(value).replace('HOME', '{home}')}` |"
            if row not in doc:
                missing.append(f"[{section}] {row}")
    for key in ("tick", "lot", "reference", "band_bps", "dynamic_band_bps"):
        if f"| `{key}` |" not in doc:
            missing.append(f"[symbols.*] {key}")
    assert not missing, missing


def test_config_show_prints_the_configuration_in_force(tmp_path):
    env = dict(os.environ, EXCHANGE_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    show = subprocess.run(
        [sys.executable, "-m", "clients.cli", "config", "show", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    shown = json.loads(show.stdout)
    assert shown["timings"]["heartbeat_ms"] == config.Timings().heartbeat_ms
    assert shown["symbols"]["AAPL"]["reference"] == 1_700_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[symbols.A]\ntick = '0.01'\nreference = '1.00'\n[gateway]\nspeed = 1\n")
    refused = subprocess.run(
        [sys.executable, "-m", "clients.cli", "config", "show", "--file", str(bad)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "[gateway]: unknown key 'speed'" in refused.stderr


@pytest.mark.parametrize("ports", ["gateway = 70000", "gatway = 9101", "journal = 0"])
def test_metrics_ports_are_checked(tmp_path, ports):
    path = tmp_path / "bad.toml"
    path.write_text(f"[symbols.A]\ntick = '0.01'\nreference = '1.00'\n[metrics.ports]\n{ports}\n")
    with pytest.raises(config.ConfigError, match=r"\[metrics\] ports"):
        config.load(path, home=tmp_path)
