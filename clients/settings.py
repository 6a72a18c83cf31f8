"""What the client programs read from the exchange's configuration file.

The trading commands, the TUI and the market maker need the public endpoints, the
symbols' specs (tick, lot, reference price, bands), whether CURVE is on and where its
keys are, the client heartbeat, the feed's depth and the limits a bot plans by. They
read the file with the exchange's own typed configuration (``services.common.config``):
one definition of every key and default for both sides. That module needs only msgspec,
the standard library, the public protocol and the money helpers, so the client side
still installs and runs without the server's packages. The SDK itself
(``clients.client``, ``clients.aio``, ``clients.feed``) takes endpoints as arguments
and reads no file.

    >>> s = load()
    >>> s.endpoints["gateway"], s.symbols["AAPL"].tick
    ('tcp://127.0.0.1:5555', 100)

On a cluster there are several gateways and marketdata services: ``gateways`` and
``marketdata`` list them (the local host's first), and the environment can name them
instead: ``EXCHANGE_GATEWAYS`` (endpoints with commas between them) and
``EXCHANGE_MARKETDATA`` (``PUB|SNAPSHOT`` pairs with commas between them). The client
programs hand the lists to the SDK, which moves along them when one goes silent.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq
import zmq.auth

from clients.core import endpoint_list
from services.common import config
from services.common.config import Config as Settings
from services.common.config import SymbolSpec, exchange_home

__all__ = [
    "Settings",
    "SymbolSpec",
    "curve_keys",
    "exchange_home",
    "gateways",
    "load",
    "marketdata",
    "parse",
]

DEFAULT_CONFIG = config.DEFAULT_CONFIG
# the exchange's public endpoints (the rest are between its services)
PUBLIC_ENDPOINTS = {
    name: getattr(config.Endpoints(), name)
    for name in ("gateway", "marketdata_pub", "marketdata_snapshot")
}


def gateways(cfg: Settings) -> list[str]:
    """The gateways' client endpoints, in the order to try them: EXCHANGE_GATEWAYS
    (e.g. ``tcp://10.0.0.1:5555,tcp://10.0.0.2:5555``) if set, else the config's
    (every gateway of a cluster, the local host's first; on one host, the one)."""
    named = os.environ.get("EXCHANGE_GATEWAYS", "").strip()
    return endpoint_list(named) if named else config.gateways(cfg)


def marketdata(cfg: Settings) -> tuple[list[str], list[str]]:
    """The marketdata services' (feed PUB endpoints, snapshot endpoints), in the same
    order: EXCHANGE_MARKETDATA (``PUB|SNAPSHOT`` pairs with commas between them) if
    set, else the config's (the local host's first)."""
    named = os.environ.get("EXCHANGE_MARKETDATA", "").strip()
    if named:
        pairs = [pair.split("|") for pair in endpoint_list(named)]
        if any(len(pair) != 2 or not all(p.strip() for p in pair) for pair in pairs):
            raise ValueError(f"EXCHANGE_MARKETDATA: PUB|SNAPSHOT pairs expected, not {named!r}")
        pairs = [(pub.strip(), snap.strip()) for pub, snap in pairs]
    else:
        pairs = config.marketdata_endpoints(cfg)
    return [pub for pub, _ in pairs], [snap for _, snap in pairs]


def parse(raw: dict, home: Path | None = None) -> Settings:
    """The configuration in ``raw`` (a TOML document), checked as the exchange checks it."""
    return config.parse(raw, home)


def load(path: str | Path | None = None, home: Path | None = None) -> Settings:
    """Read ``path``, else ``$EXCHANGE_CONFIG``, else config/default.toml; an installed
    SDK without that file (no path given) gets the defaults: the public endpoints and
    no symbols."""
    named = path or os.environ.get("EXCHANGE_CONFIG")
    if not named and not DEFAULT_CONFIG.exists():
        return Settings(symbols={}, home=home or exchange_home())
    return config.load(named or DEFAULT_CONFIG, home)


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
