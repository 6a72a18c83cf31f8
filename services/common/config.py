"""The exchange's configuration, read from TOML into typed, integer-valued records."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.common.money import to_units
from services.common.wire import Stp

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.toml"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    tick: int  # price units
    lot: int  # shares
    reference: int  # price units
    band_bps: int  # static band: limit prices within reference * (1 +- band_bps / 10,000)
    # dynamic band around the last trade (the reference before any): a trade outside it
    # starts a volatility pause instead; 0 means half the static band
    dynamic_band_bps: int = 0

    @property
    def dynamic_bps(self) -> int:
        return self.dynamic_band_bps or max(1, self.band_bps // 2)


INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Pre-trade limits the engine enforces. The defaults are the demo exchange's
    (``make run``): a large opening balance and short sales up to the position limit;
    config/production.example.toml opens accounts at zero with short sales off.

    Money is in price units. The limits together keep every quantity the engine derives
    (cash, notional, open buy value, positions) inside int64, checked at load time, so a
    record the journal holds always encodes and replays."""

    max_order_qty: int = 100_000
    max_position: int = 1_000_000
    max_open_orders: int = 5_000
    default_stp: Stp = Stp.CANCEL_INCOMING
    max_price: int = 10_000_000_000  # price units ($1,000,000): no band or reference above
    max_cash: int = 10**17  # |cash| of any account ($10 trillion)
    opening_cash: int = 1_000_000_000_000  # a new account's cash ($100,000,000)
    credit_limit: int = 0  # how far below zero an account's cash may go
    short_limit: int = 1_000_000  # shares an account may be short per symbol (0: no shorts)
    pause_ms: int = 5_000  # a volatility pause lasts this long, then the symbol reopens

    def check(self) -> None:
        """Refuse limits under which a derived quantity could pass int64."""
        if min(self.max_order_qty, self.max_position, self.max_open_orders, self.max_price) <= 0:
            raise ValueError("risk: max_order_qty, max_position, max_open_orders, max_price > 0")
        if not 0 <= self.short_limit <= self.max_position:
            raise ValueError("risk: short_limit must be within 0 .. max_position")
        if (
            not 0 <= self.opening_cash <= self.max_cash
            or not 0 <= self.credit_limit <= self.max_cash
        ):
            raise ValueError("risk: opening_cash and credit_limit must be within 0 .. max_cash")
        if self.pause_ms < 0:
            raise ValueError("risk: pause_ms must be >= 0")
        # a position's value and the cash it settles against, with room for one more order
        worst = (
            self.max_cash
            + self.credit_limit
            + 2 * self.max_price * (self.max_position + self.max_order_qty)
        )
        if worst > INT64_MAX // 2:
            raise ValueError("risk: max_cash and max_price x max_position could pass int64")


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


# [risk] keys written in dollars (strings, like prices) and kept in price units
MONEY_KEYS = frozenset({"max_price", "max_cash", "opening_cash", "credit_limit"})


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
        dynamic_band_bps=int(raw.get("dynamic_band_bps", 0)),
    )
    if spec.tick <= 0 or spec.lot <= 0 or spec.reference <= 0 or spec.reference % spec.tick:
        raise ValueError(f"symbol {name}: tick, lot and reference must be positive, on tick")
    if not 0 < spec.band_bps < 10_000 or not 0 <= spec.dynamic_band_bps <= spec.band_bps:
        raise ValueError(f"symbol {name}: need 0 < band_bps < 10000, dynamic_band_bps <= it")
    return spec


def parse(raw: dict, home: Path | None = None) -> Config:
    home = home or exchange_home()
    risk_raw = dict(raw.get("risk", {}))
    stp_name = str(risk_raw.pop("default_stp", "cancel_incoming")).upper()
    for key in MONEY_KEYS & risk_raw.keys():  # dollars as strings, like prices
        risk_raw[key] = to_units(risk_raw[key])
    risk = RiskLimits(default_stp=Stp[stp_name], **{k: int(v) for k, v in risk_raw.items()})
    risk.check()
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
