"""The exchange's configuration, read from TOML into typed, integer-valued records."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.common.money import to_units
from services.common.protocol import Stp

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.toml"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    tick: int  # price units
    lot: int  # shares
    reference: int  # price units
    band_bps: int  # limit prices within reference * (1 +- band_bps / 10,000)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_qty: int = 100_000
    max_position: int = 1_000_000
    max_open_orders: int = 5_000
    default_stp: Stp = Stp.CANCEL_INCOMING


@dataclass(frozen=True, slots=True)
class Config:
    symbols: dict[str, SymbolSpec]
    risk: RiskLimits = field(default_factory=RiskLimits)
    endpoints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, int] = field(default_factory=dict)
    journal: dict[str, object] = field(default_factory=dict)
    marketdata: dict[str, object] = field(default_factory=dict)
    matcher: dict[str, object] = field(default_factory=dict)
    gateway: dict[str, object] = field(default_factory=dict)
    security: dict[str, object] = field(default_factory=dict)
    home: Path = Path("var")


def exchange_home() -> Path:
    """``EXCHANGE_HOME`` holds everything a running exchange writes (default ``./var``)."""
    return Path(os.environ.get("EXCHANGE_HOME", "var")).resolve()


def parse_symbol(name: str, raw: dict) -> SymbolSpec:
    spec = SymbolSpec(
        symbol=name,
        tick=to_units(raw["tick"]),
        lot=int(raw.get("lot", 1)),
        reference=to_units(raw["reference"]),
        band_bps=int(raw.get("band_bps", 1000)),
    )
    if spec.tick <= 0 or spec.lot <= 0 or spec.reference <= 0 or spec.reference % spec.tick:
        raise ValueError(f"symbol {name}: tick, lot and reference must be positive, on tick")
    return spec


def parse(raw: dict, home: Path | None = None) -> Config:
    home = home or exchange_home()
    risk_raw = dict(raw.get("risk", {}))
    stp_name = str(risk_raw.pop("default_stp", "cancel_incoming")).upper()
    risk = RiskLimits(default_stp=Stp[stp_name], **{k: int(v) for k, v in risk_raw.items()})
    endpoints = {k: v.replace("{home}", str(home)) for k, v in raw.get("endpoints", {}).items()}
    return Config(
        symbols={name: parse_symbol(name, spec) for name, spec in raw["symbols"].items()},
        risk=risk,
        endpoints=endpoints,
        timings={k: int(v) for k, v in raw.get("timings", {}).items()},
        journal=dict(raw.get("journal", {})),
        marketdata=dict(raw.get("marketdata", {})),
        matcher=dict(raw.get("matcher", {})),
        gateway=dict(raw.get("gateway", {})),
        security=dict(raw.get("security", {})),
        home=home,
    )


def load(path: str | Path | None = None, home: Path | None = None) -> Config:
    """Read ``path``, else ``$EXCHANGE_CONFIG``, else config/default.toml."""
    path = Path(path or os.environ.get("EXCHANGE_CONFIG") or DEFAULT_CONFIG)
    with path.open("rb") as fh:
        return parse(tomllib.load(fh), home)


def matcher_endpoints(cfg: Config, instance: str) -> tuple[str, str]:
    """(command ROUTER, event PUB) endpoints of matcher instance ``instance`` (a or b)."""
    if instance == "a":
        return cfg.endpoints["matcher_in"], cfg.endpoints["matcher_pub"]
    return cfg.endpoints[f"matcher_{instance}_in"], cfg.endpoints[f"matcher_{instance}_pub"]
