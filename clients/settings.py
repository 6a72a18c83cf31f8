"""What the client programs read from the exchange's configuration file.

The trading commands, the TUI and the market maker need the public endpoints, the
symbols' specs (tick, lot, reference price, bands), whether CURVE is on and where its
keys are, the client heartbeat, the feed's depth and the limits a bot plans by. The
exchange's own loader (``services.common.config``) reads the whole file into typed,
checked sections and belongs to the server; this reads the same file with plain TOML
and keeps only those keys, so the client side installs and runs without the server's
code or packages. The SDK itself (``clients.client``, ``clients.aio``,
``clients.feed``) takes endpoints as arguments and does not read any file.

A key the file leaves out takes the exchange's default; the few a client reads are
repeated here, and tests/test_sdk_settings.py fails if one of them drifts from the
server's.

    >>> s = load()
    >>> s.endpoints["gateway"], s.symbols["AAPL"].tick
    ('tcp://127.0.0.1:5555', 100)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import zmq
import zmq.auth

from services.common.money import to_units

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "default.toml"
# the exchange's public endpoints when [endpoints] does not name them
PUBLIC_ENDPOINTS = {
    "gateway": "tcp://127.0.0.1:5555",  # order entry (ROUTER)
    "marketdata_pub": "tcp://127.0.0.1:5556",  # the feeds (PUB)
    "marketdata_snapshot": "tcp://127.0.0.1:5557",  # snapshots and the tape (ROUTER)
}


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A symbol as a client sees it: prices in price units, sizes in shares."""

    symbol: str
    tick: int
    lot: int = 1
    reference: int = 0  # centre of the static band
    band_bps: int = 1000  # static band: limit prices within reference * (1 +- bps / 10,000)
    dynamic_band_bps: int = 0  # trades within this of the last trade (0: half the band)

    @property
    def dynamic_bps(self) -> int:
        return self.dynamic_band_bps or max(1, self.band_bps // 2)


@dataclass(frozen=True, slots=True)
class Risk:
    """[risk]: the exchange's limits a bot sizes its quotes by."""

    max_order_qty: int = 100_000
    max_position: int = 1_000_000
    max_open_orders: int = 5_000


@dataclass(frozen=True, slots=True)
class Timings:
    client_heartbeat_ms: int = 2_000  # a session silent for three of these is dropped


@dataclass(frozen=True, slots=True)
class Marketdata:
    depth: int = 10  # levels per side on the L2 feed


@dataclass(frozen=True, slots=True)
class Security:
    curve: bool = False
    curve_dir: str = "{home}/keys"  # server.key (the gateway's public key) is here


@dataclass(frozen=True, slots=True)
class Settings:
    symbols: dict[str, SymbolSpec]
    endpoints: dict[str, str] = field(default_factory=lambda: dict(PUBLIC_ENDPOINTS))
    risk: Risk = field(default_factory=Risk)
    timings: Timings = field(default_factory=Timings)
    marketdata: Marketdata = field(default_factory=Marketdata)
    security: Security = field(default_factory=Security)
    home: Path = Path("var")


def exchange_home() -> Path:
    """``EXCHANGE_HOME`` (default ``./var``): where ``{home}`` in the file points."""
    return Path(os.environ.get("EXCHANGE_HOME", "var")).resolve()


def _section(kind: type, raw: object):
    """The keys of ``kind`` found in the TOML table ``raw``, others ignored."""
    table = raw if isinstance(raw, dict) else {}
    defaults = kind()
    found = {f.name for f in fields(kind)} & table.keys()
    return kind(**{name: type(getattr(defaults, name))(table[name]) for name in found})


def _symbol(name: str, raw: dict) -> SymbolSpec:
    return SymbolSpec(
        symbol=name,
        tick=to_units(raw["tick"]),
        lot=int(raw.get("lot", 1)),
        reference=to_units(raw["reference"]),
        band_bps=int(raw.get("band_bps", 1000)),
        dynamic_band_bps=int(raw.get("dynamic_band_bps", 0)),
    )


def parse(raw: dict, home: Path | None = None) -> Settings:
    home = home or exchange_home()
    endpoints = dict(PUBLIC_ENDPOINTS) | dict(raw.get("endpoints", {}))
    security = _section(Security, raw.get("security"))
    return Settings(
        symbols={name: _symbol(name, spec) for name, spec in raw.get("symbols", {}).items()},
        endpoints={k: str(v).replace("{home}", str(home)) for k, v in endpoints.items()},
        risk=_section(Risk, raw.get("risk")),
        timings=_section(Timings, raw.get("timings")),
        marketdata=_section(Marketdata, raw.get("marketdata")),
        security=Security(security.curve, security.curve_dir.replace("{home}", str(home))),
        home=home,
    )


def load(path: str | Path | None = None, home: Path | None = None) -> Settings:
    """Read ``path``, else ``$EXCHANGE_CONFIG``, else config/default.toml; an installed
    SDK without that file (no path given) gets the public endpoints and no symbols."""
    named = path or os.environ.get("EXCHANGE_CONFIG")
    if not named and not DEFAULT_CONFIG.exists():
        return parse({}, home or exchange_home())
    with Path(named or DEFAULT_CONFIG).open("rb") as fh:
        return parse(tomllib.load(fh), home or exchange_home())


# -- CURVE, the client side -------------------------------------------------------


def client_keys(secret_file: Path, server_public_file: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a client's ``curve_keys``."""
    public, secret = zmq.auth.load_certificate(secret_file)
    server_public, _ = zmq.auth.load_certificate(server_public_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    return public, secret, server_public


def curve_keys(settings: Settings) -> tuple[bytes, bytes, bytes] | None:
    """The keys to reach the gateway when the config turns CURVE on: the client's
    secret key file from EXCHANGE_CURVE_KEY, the gateway's public key from the key
    directory (``exchange keys`` makes both). None when CURVE is off."""
    if not settings.security.curve:
        return None
    secret = os.environ.get("EXCHANGE_CURVE_KEY")
    if not secret:
        raise LookupError("CURVE is on: set EXCHANGE_CURVE_KEY to your .key_secret file")
    return client_keys(Path(secret), Path(settings.security.curve_dir) / "server.key")
