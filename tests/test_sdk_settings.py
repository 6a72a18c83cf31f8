"""The client programs' reading of the config file (clients/settings.py) agrees with the
exchange's own (services/common/config.py) on every key a client reads, defaults
included: the shipped files, a file that names only its symbols, and one that sets
every key the client reads."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from clients import settings
from services.common import config

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"symbols": {"XYZ": {"tick": "0.05", "reference": "10.00"}}}
EVERY = {
    "symbols": {
        "XYZ": {
            "tick": "0.05",
            "lot": 10,
            "reference": "10.00",
            "band_bps": 800,
            "dynamic_band_bps": 300,
        }
    },
    "endpoints": {
        "gateway": "tcp://10.0.0.1:7000",
        "marketdata_pub": "ipc://{home}/run/md-pub",
        "marketdata_snapshot": "tcp://10.0.0.1:7002",
    },
    "risk": {"max_order_qty": 500, "max_position": 5_000, "max_open_orders": 50, "short_limit": 0},
    "timings": {"client_heartbeat_ms": 750},
    "marketdata": {"depth": 5},
    "security": {"curve": True, "curve_dir": "{home}/elsewhere"},
}


def shipped(name: str) -> dict:
    with (ROOT / "config" / name).open("rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize(
    "raw",
    [shipped("default.toml"), shipped("production.example.toml"), MINIMAL, EVERY],
    ids=["default", "production", "minimal", "every"],
)
def test_the_client_reads_what_the_exchange_reads(raw, tmp_path):
    server = config.parse(raw, tmp_path)
    client = settings.parse(raw, tmp_path)
    for name in settings.PUBLIC_ENDPOINTS:
        assert client.endpoints[name] == server.endpoints[name], name
    assert client.symbols.keys() == server.symbols.keys()
    for name, spec in client.symbols.items():
        assert dataclasses.asdict(spec) == dataclasses.asdict(server.symbols[name])
        assert spec.dynamic_bps == server.symbols[name].dynamic_bps
    for section in ("risk", "timings", "marketdata", "security"):
        mine = getattr(client, section)
        theirs = getattr(server, section)
        for field in dataclasses.fields(mine):
            assert getattr(mine, field.name) == getattr(theirs, field.name), (section, field)


def test_curve_keys_need_the_client_key_when_curve_is_on(tmp_path, monkeypatch):
    monkeypatch.delenv("EXCHANGE_CURVE_KEY", raising=False)
    assert settings.curve_keys(settings.parse(MINIMAL, tmp_path)) is None
    with pytest.raises(LookupError, match="EXCHANGE_CURVE_KEY"):
        settings.curve_keys(settings.parse(EVERY, tmp_path))


def test_an_installed_sdk_without_the_file_knows_the_public_endpoints(tmp_path, monkeypatch):
    monkeypatch.delenv("EXCHANGE_CONFIG", raising=False)
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    found = settings.load(home=tmp_path)
    assert found.endpoints == settings.PUBLIC_ENDPOINTS and found.symbols == {}
    with pytest.raises(FileNotFoundError):  # a file named but missing is an error
        settings.load(tmp_path / "named.toml")
