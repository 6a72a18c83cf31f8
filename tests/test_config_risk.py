"""The risk limits in the shipped configurations, and limits the start refuses."""

from __future__ import annotations

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
        ({"short_limit": 2_000_000}, "short_limit"),
        ({"opening_cash": "-1.00"}, "opening_cash"),
    ],
)
def test_limits_that_could_overflow_stop_the_start(tmp_path, override, words):
    raw = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    raw["risk"].update(override)
    with pytest.raises(ValueError, match=words):
        config.parse(raw, tmp_path)
