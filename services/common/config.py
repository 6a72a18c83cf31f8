"""The exchange's configuration: one typed definition per TOML section, every default
written once, here.

A TOML file (config/default.toml, or ``$EXCHANGE_CONFIG``) only overrides these
defaults. Loading checks every key: an unknown key or a value of the wrong type stops
the start with a message that names the section and the key. Money is written in
dollars as strings ("170.50") and held in integer price units (1/10,000 of a dollar).
``exchange config show [--json]`` prints the effective configuration, and
docs/configuration.md lists every key with its default (a test keeps it in step).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from services.common import trading_calendar
from services.common.money import to_units
from services.common.wire import Stp

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "default.toml"
INT64_MAX = 2**63 - 1


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the section and key."""


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    tick: int  # price units
    lot: int = 1  # shares
    reference: int = 0  # price units: the day's reference price, centre of the static band
    band_bps: int = 1000  # static band: limit prices within reference * (1 +- band_bps / 10,000)
    # dynamic band around the last trade (the reference before any): a trade outside it
    # starts a volatility pause instead; 0 means half the static band
    dynamic_band_bps: int = 0

    @property
    def dynamic_bps(self) -> int:
        return self.dynamic_band_bps or max(1, self.band_bps // 2)

    def check(self) -> None:
        name = self.symbol
        if self.tick <= 0 or self.lot <= 0 or self.reference <= 0 or self.reference % self.tick:
            raise ConfigError(f"[symbols.{name}]: tick, lot, reference must be positive, on tick")
        if not 0 < self.band_bps < 10_000 or not 0 <= self.dynamic_band_bps <= self.band_bps:
            raise ConfigError(f"[symbols.{name}]: 0 < band_bps < 10000, dynamic_band_bps <= it")


MAX_ORDER_QTY_CEILING = INT64_MAX >> 32


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """[risk]: pre-trade limits the engine enforces. The defaults are the demo
    exchange's (``make run``): a large opening balance and short sales up to the
    position limit; config/production.example.toml opens accounts at zero with short
    sales off. Money is in price units. The limits together keep every quantity the
    engine derives (cash, notional, open buy value, positions) inside int64, checked
    at load time, so a record the journal holds always encodes and replays."""

    max_order_qty: int = 100_000  # shares in one order
    max_position: int = 1_000_000  # |shares| per account per symbol, counting open orders
    max_open_orders: int = 5_000  # open orders per account
    default_stp: Stp = Stp.CANCEL_INCOMING  # cancel_resting | cancel_incoming | cancel_both
    max_price: int = 10_000_000_000  # ($1,000,000) no price, band or reference above this
    max_cash: int = 10**17  # ($10 trillion) |cash| of any account
    opening_cash: int = 1_000_000_000_000  # ($100,000,000) a new account's cash
    credit_limit: int = 0  # how far below zero an account's cash may go
    short_limit: int = 1_000_000  # shares an account may be short per symbol (0: no shorts)
    pause_ms: int = 5_000  # a volatility pause lasts this long, then the symbol reopens

    def check(self) -> None:
        """Refuse limits under which a derived quantity could pass int64."""
        if min(self.max_order_qty, self.max_position, self.max_open_orders, self.max_price) <= 0:
            raise ConfigError(
                "[risk]: max_order_qty, max_position, max_open_orders, max_price must be > 0"
            )
        if self.max_order_qty > MAX_ORDER_QTY_CEILING:
            # the compiled engine keeps a price level's total size in 64 bits: it can
            # then never pass them, even with 2^32 orders resting at one price
            raise ConfigError(
                f"[risk]: max_order_qty must be at most {MAX_ORDER_QTY_CEILING:,} "
                "(a price level's total size stays inside int64)"
            )
        if not 0 <= self.short_limit <= self.max_position:
            raise ConfigError("[risk]: short_limit must be within 0 .. max_position")
        if (
            not 0 <= self.opening_cash <= self.max_cash
            or not 0 <= self.credit_limit <= self.max_cash
        ):
            raise ConfigError("[risk]: opening_cash and credit_limit must be within 0 .. max_cash")
        if self.pause_ms < 0:
            raise ConfigError("[risk]: pause_ms must be >= 0")
        # a position's value and the cash it settles against, with room for one more order
        worst = (
            self.max_cash
            + self.credit_limit
            + 2 * self.max_price * (self.max_position + self.max_order_qty)
        )
        if worst > INT64_MAX // 2:
            raise ConfigError("[risk]: max_cash and max_price x max_position could pass int64")


@dataclass(frozen=True, slots=True)
class Security:
    """[security]: who may do what, and how fast."""

    # accounts that may use `exchange admin`; sign the account up first, then list it
    # here: a listed name nobody has signed up is anyone's to claim
    operators: tuple[str, ...] = ()
    curve: bool = False  # CURVE encryption and client keys on tcp:// links
    curve_dir: str = "{home}/keys"  # where `exchange keys` keeps them
    token_ttl_s: float = 8 * 3600  # session tokens (for `resume`) expire after this
    max_sessions_per_account: int = 16
    # an account's fair share of the exchange, not its capacity: a flood from one
    # account must leave room for everyone else (bench sustained lifts them)
    session_rate: float = 2_000  # requests/s per session (bursts of twice that)
    account_rate: float = 4_000  # requests/s over all of an account's sessions
    anonymous_rate: float = 100  # requests/s per connection not logged in (bursts of 2x)
    login_free_tries: int = 3  # per (connection, name), then 2, 4, 8 ... s locked out
    login_max_backoff_s: float = 60
    login_name_threshold: int = 20  # failures for a name from all connections, past which
    login_name_rate: float = 2.0  # it gets this many hashes a second
    max_in_flight_per_account: int = 1_000  # commands awaiting their commit, per account
    client_sndhwm: int = 10_000  # replies queued per client connection; past it, choked

    def check(self) -> None:
        if self.login_name_rate <= 0 or self.max_in_flight_per_account < 1:
            raise ConfigError(
                "[security]: login_name_rate must be > 0, max_in_flight_per_account >= 1"
            )


@dataclass(frozen=True, slots=True)
class Endpoints:
    """[endpoints]: every one a ZeroMQ address; "{home}" becomes $EXCHANGE_HOME."""

    gateway: str = "tcp://127.0.0.1:5555"  # ROUTER facing clients
    matcher_in: str = "ipc://{home}/run/matcher-in"  # gateway DEALER -> matcher ROUTER
    matcher_pub: str = "ipc://{home}/run/matcher-pub"  # matcher PUB: sequenced events
    matcher_b_in: str = "ipc://{home}/run/matcher-b-in"
    matcher_b_pub: str = "ipc://{home}/run/matcher-b-pub"
    journal_pub: str = "ipc://{home}/run/journal-pub"  # committed stream
    journal_read: str = "ipc://{home}/run/journal-read"  # range reads, ROUTER
    marketdata_pub: str = "tcp://127.0.0.1:5556"  # public feeds
    marketdata_snapshot: str = "tcp://127.0.0.1:5557"  # snapshots, ROUTER
    heartbeat: str = "ipc://{home}/run/heartbeat"  # heartbeat ROUTER
    status_pub: str = "ipc://{home}/run/status-pub"

    def __getitem__(self, name: str) -> str:
        return getattr(self, name)

    def items(self):
        return dataclasses.asdict(self).items()


@dataclass(frozen=True, slots=True)
class Timings:
    """[timings]"""

    heartbeat_ms: int = 50  # every service beats every H ms
    missed_beats: int = 4  # K missed beats (K x H ms) promote the standby
    client_heartbeat_ms: int = 2_000  # client <-> gateway; silent 3 of these: dropped
    journal_lag_window: int = 5_000  # matcher stops taking commands past this many uncommitted
    retransmit_buffer: int = 100_000  # records the matcher keeps for gap fills


@dataclass(frozen=True, slots=True)
class Journal:
    """[journal]"""

    fsync: bool = True
    segment_bytes: int = 64 << 20  # a segment rolls over before this; each starts as a spare
    min_sync_interval_us: int = 500  # group commit: at most one fdatasync started per this
    archive_check_s: float = 10  # archive segments every reader snapshotted past (0: never)
    disk_reserve_bytes: int = 256 << 20  # no spare segment may leave less free than this
    disk_retry_ms: int = 1_000  # while the disk is full, try writing again this often


@dataclass(frozen=True, slots=True)
class Marketdata:
    """[marketdata]"""

    depth: int = 10  # levels per side on the L2 feed
    snapshot_every: int = 50_000  # records between snapshots of the books
    pub_hwm: int = 10_000  # messages queued per feed subscriber; past it, dropped
    snapshot_max_depth: int = 1_000  # levels per side in a snapshot reply at most
    snapshot_rate: float = 50  # snapshot requests/s per connection ...
    snapshot_burst: int = 100  # ... in bursts of this many
    snapshot_peers: int = 10_000  # connections whose rate is tracked
    snapshot_queue: int = 128  # replies queued per connection; full: not served for 1 s


@dataclass(frozen=True, slots=True)
class Gateway:
    """[gateway]"""

    snapshot_every: int = 50_000  # records between snapshots of the account view
    max_in_flight: int = 20_000  # commands awaiting their commit over all accounts


@dataclass(frozen=True, slots=True)
class Matcher:
    """[matcher]"""

    snapshot_every: int = 50_000  # a standby writes a snapshot every N records
    snapshot_cpu_share: float = 0.02  # ... no sooner than its last one's CPU time / this


@dataclass(frozen=True, slots=True)
class Fix:
    """[fix]: the FIX 4.4 acceptor (docs/fix.md), a client of the gateway."""

    host: str = "127.0.0.1"  # the interface the FIX acceptor listens on
    port: int = 9878  # its TCP port
    target_comp_id: str = "EXCHANGE"  # our CompID: every message's TargetCompID (56)
    max_sessions: int = 256  # FIX connections at once; past it, new ones are closed
    max_message_bytes: int = 8_192  # a longer message (BodyLength) ends the connection
    message_rate: float = 2_000  # inbound messages/s per connection (bursts of 2x): past it, Logout
    logon_timeout_s: float = 5  # a connection must log on within this
    max_heartbeat_s: int = 300  # HeartBtInt (108) accepted: 1 .. this
    store_kept: int = 100_000  # sent messages kept per session for ResendRequest
    orders_kept: int = 100_000  # finished orders remembered per account (status, duplicates)


@dataclass(frozen=True, slots=True)
class Statements:
    """[statements]: the end-of-day statements writer (docs/operations.md)."""

    # where each trading day's statements go ("{home}" becomes $EXCHANGE_HOME)
    directory: str = "{home}/statements"


@dataclass(frozen=True, slots=True)
class MetricsExport:
    """[metrics]: each service's counters and histograms in Prometheus's format."""

    host: str = "127.0.0.1"  # the interface the metrics endpoints listen on
    # service name (gateway, matcher-a, matcher-b, journal, marketdata, heartbeat,
    # statements) ->
    # its HTTP port for /metrics; a service not listed exports nothing
    ports: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Schedule:
    """[schedule]: the trading day (services/common/trading_calendar.py reads it). Times
    are "HH:MM" (or "HH:MM:SS") in ``timezone`` on each trading date, in order, "24:00"
    the date's end. The default is a 24-hour day of continuous trading, every day a
    trading day, rolling at 00:00 UTC: schedules with auctions are opt-in."""

    timezone: str = "UTC"  # the exchange's time zone (an IANA name)
    pre_open: str = "00:00"  # symbols enter the opening call (PRE_OPEN)
    open: str = "00:00"  # the opening auction, then continuous trading
    pre_close: str = "24:00"  # the closing call (PRE_CLOSE)
    close: str = "24:00"  # the closing auction, then CLOSED
    end_of_day: str = "24:00"  # the trading date ends: DAY orders expire, the next begins
    weekdays: tuple[str, ...] = trading_calendar.WEEKDAYS  # the days of the week that trade
    holidays: tuple[str, ...] = ()  # "YYYY-MM-DD" dates that are not trading days
    reopen_call_ms: int = 2_000  # a resumed symbol's re-opening call lasts this long
    # an accelerated clock, for tests and benchmarks: at UNIX time ``clock_origin`` the
    # exchange's clock reads ``clock_start`` (local "YYYY-MM-DDTHH:MM[:SS]") and it runs
    # ``clock_speed`` times faster than real time; "" (the default): the real clock
    clock_start: str = ""
    clock_origin: float = 0.0
    clock_speed: float = 1.0


@dataclass(frozen=True, slots=True)
class Host:
    """[cluster.hosts.NAME]: one machine of a cluster."""

    address: str  # the address other hosts reach it at (advertised in every endpoint)
    bind: str = ""  # the interface its services bind to: "" (its address) or "*"
    # what runs there: any of etcd, heartbeat, journal, matcher-a, matcher-b, gateway,
    # marketdata, statements
    services: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterPorts:
    """[cluster.ports]: the TCP port of each endpoint, the same on every host."""

    gateway: int = 5555
    marketdata_pub: int = 5556
    marketdata_snapshot: int = 5557
    matcher_in: int = 5560  # matcher-a's
    matcher_pub: int = 5561
    matcher_b_in: int = 5562
    matcher_b_pub: int = 5563
    journal_pub: int = 5570
    journal_read: int = 5571
    heartbeat: int = 5580
    status_pub: int = 5581
    etcd_client: int = 2379
    etcd_peer: int = 2380


@dataclass(frozen=True, slots=True)
class Cluster:
    """[cluster]: several hosts (``docs/operations.md``, "Three machines"). Empty
    ``hosts`` (the default) is the one-host exchange, with [endpoints] as written."""

    # this process's host: ``exchange up --cluster FILE --host NAME`` sets it through
    # $EXCHANGE_HOST, which wins over this key
    host: str = ""
    hosts: dict[str, Host] = field(default_factory=dict)
    ports: ClusterPorts = field(default_factory=ClusterPorts)
    etcd_heartbeat_ms: int = 25  # etcd's --heartbeat-interval (its leader's beat)
    etcd_election_ms: int = 250  # etcd's --election-timeout
    etcd_timeout_ms: int = 500  # one request to an etcd member, before the next is tried


CLUSTER_SERVICES = frozenset(
    {"etcd", "heartbeat", "journal", "matcher-a", "matcher-b", "gateway", "marketdata",
     "statements"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Config:
    symbols: dict[str, SymbolSpec]
    risk: RiskLimits = field(default_factory=RiskLimits)
    security: Security = field(default_factory=Security)
    endpoints: Endpoints = field(default_factory=Endpoints)
    timings: Timings = field(default_factory=Timings)
    journal: Journal = field(default_factory=Journal)
    marketdata: Marketdata = field(default_factory=Marketdata)
    gateway: Gateway = field(default_factory=Gateway)
    matcher: Matcher = field(default_factory=Matcher)
    metrics: MetricsExport = field(default_factory=MetricsExport)
    cluster: Cluster = field(default_factory=Cluster)
    statements: Statements = field(default_factory=Statements)
    fix: Fix = field(default_factory=Fix)
    schedule: Schedule = field(default_factory=Schedule)
    home: Path = Path("var")


# the sections a TOML file may hold, and the type each is read into
SECTIONS = {
    "risk": RiskLimits,
    "security": Security,
    "endpoints": Endpoints,
    "timings": Timings,
    "journal": Journal,
    "marketdata": Marketdata,
    "gateway": Gateway,
    "matcher": Matcher,
    "metrics": MetricsExport,
    "cluster": Cluster,
    "statements": Statements,
    "fix": Fix,
    "schedule": Schedule,
}
# the services a [metrics] ports table may name
SERVICES = (
    "gateway", "matcher-a", "matcher-b", "journal", "marketdata", "heartbeat", "statements"
)  # fmt: skip
# keys written in dollars (strings, like prices) and kept in price units
MONEY_KEYS = {
    "risk": frozenset({"max_price", "max_cash", "opening_cash", "credit_limit"}),
    "symbols": frozenset({"tick", "reference"}),
}


def exchange_home() -> Path:
    """``EXCHANGE_HOME`` holds everything a running exchange writes (default ``./var``)."""
    return Path(os.environ.get("EXCHANGE_HOME", "var")).resolve()


def _read(section: str, raw: dict, kind: type, **fixed):
    """``raw`` (a TOML table) as ``kind``: unknown keys and wrong types name the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}] must be a table")
    names = {f.name for f in dataclasses.fields(kind)} - fixed.keys()
    unknown = sorted(raw.keys() - names)
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown key {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(names))})"
        )
    values = dict(raw)
    for key in MONEY_KEYS.get(section.split(".")[0], ()) & values.keys():
        try:
            values[key] = to_units(values[key])
        except (ValueError, ArithmeticError, TypeError) as exc:
            raise ConfigError(f"[{section}] {key}: not an amount in dollars: {exc}") from None
    if kind is RiskLimits and isinstance(values.get("default_stp"), str):
        name = values["default_stp"].upper()
        if name not in Stp.__members__ or name == "DEFAULT":
            raise ConfigError(f"[{section}] default_stp: {values['default_stp']!r} is not one of "
                              "cancel_resting, cancel_incoming, cancel_both")  # fmt: skip
        values["default_stp"] = Stp[name]
    try:
        return msgspec.convert({**values, **fixed}, kind, strict=False)
    except msgspec.ValidationError as exc:
        where = str(exc).replace("$.", "")
        raise ConfigError(f"[{section}]: {where}") from None


def parse(raw: dict, home: Path | None = None) -> Config:
    home = home or exchange_home()
    unknown = sorted(raw.keys() - SECTIONS.keys() - {"symbols"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(map(repr, unknown))}")
    symbols_raw = raw.get("symbols")
    if not symbols_raw or not isinstance(symbols_raw, dict):
        raise ConfigError("[symbols]: at least one symbol, e.g. [symbols.AAPL] tick/reference")
    symbols = {}
    for name, spec in symbols_raw.items():
        for key in ("tick", "reference"):
            if key not in (spec if isinstance(spec, dict) else {}):
                raise ConfigError(f"[symbols.{name}]: {key} is required")
        symbols[name] = _read(f"symbols.{name}", spec, SymbolSpec, symbol=name)
        symbols[name].check()
    sections = {name: _read(name, raw.get(name, {}), kind) for name, kind in SECTIONS.items()}
    endpoints = sections["endpoints"]
    sections["endpoints"] = Endpoints(
        **{k: v.replace("{home}", str(home)) for k, v in endpoints.items()}
    )
    security = sections["security"]
    sections["security"] = dataclasses.replace(
        security, curve_dir=security.curve_dir.replace("{home}", str(home))
    )
    statements = sections["statements"]
    sections["statements"] = dataclasses.replace(
        statements, directory=statements.directory.replace("{home}", str(home))
    )
    sections["risk"].check()
    sections["security"].check()
    cluster = sections["cluster"] = _cluster(sections["cluster"])
    if cluster.hosts:
        sections["endpoints"] = _host_endpoints(cluster, home)
    fix = sections["fix"]
    if not 0 < fix.port < 65536 or min(fix.max_sessions, fix.max_heartbeat_s) < 1:
        raise ConfigError("[fix]: port 1-65535, max_sessions and max_heartbeat_s >= 1")
    if min(fix.max_message_bytes, fix.store_kept, fix.orders_kept) < 256 or fix.message_rate <= 0:
        raise ConfigError("[fix]: max_message_bytes, store_kept, orders_kept >= 256, rate > 0")
    for service, port in sections["metrics"].ports.items():
        if service not in SERVICES or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(
                f"[metrics] ports: {service} = {port!r}: a service of "
                f"{', '.join(SERVICES)} and a port 1-65535"
            )
    try:
        trading_calendar.check(sections["schedule"])
    except ValueError as exc:
        raise ConfigError(f"[schedule]: {exc}") from None
    for name, spec in symbols.items():
        if spec.reference > sections["risk"].max_price:
            raise ConfigError(f"[symbols.{name}]: reference above [risk] max_price")
    return Config(symbols=symbols, home=home, **sections)


def _cluster(cluster: Cluster) -> Cluster:
    """Check a cluster's layout; the host named by $EXCHANGE_HOST wins over ``host``."""
    if not cluster.hosts:
        return cluster
    host = os.environ.get("EXCHANGE_HOST") or cluster.host
    if host and host not in cluster.hosts:
        raise ConfigError(f"[cluster]: host {host!r} is not one of {', '.join(cluster.hosts)}")
    for name, spec in cluster.hosts.items():
        unknown = sorted(set(spec.services) - CLUSTER_SERVICES)
        if unknown:
            raise ConfigError(
                f"[cluster.hosts.{name}] services: unknown {', '.join(unknown)} "
                f"(known: {', '.join(sorted(CLUSTER_SERVICES))})"
            )
    for single in ("matcher-a", "matcher-b"):
        if len(placed(cluster, single)) > 1:
            raise ConfigError(f"[cluster]: {single} runs on more than one host")
    for needed in ("matcher-a", "journal", "heartbeat"):
        if not placed(cluster, needed):
            raise ConfigError(f"[cluster]: no host runs {needed}")
    journals = placed(cluster, "journal")
    if host and host in cluster.hosts:
        for local in ("journal", "heartbeat"):
            if local not in cluster.hosts[host].services:
                raise ConfigError(
                    f"[cluster.hosts.{host}]: every host runs a {local} (its services "
                    "follow the local one)"
                )
    if len(placed(cluster, "etcd")) not in (0, len(placed(cluster, "heartbeat"))) or (
        len(journals) > 1 and not placed(cluster, "etcd")
    ):
        raise ConfigError("[cluster]: with several journals, every heartbeat host runs etcd")
    return dataclasses.replace(cluster, host=host)


def placed(cluster: Cluster, service: str) -> list[str]:
    """The hosts that run ``service``, in the file's order."""
    return [name for name, spec in cluster.hosts.items() if service in spec.services]


def _tcp(cluster: Cluster, host: str, port: str) -> str:
    return f"tcp://{cluster.hosts[host].address}:{getattr(cluster.ports, port)}"


def _host_endpoints(cluster: Cluster, home: Path) -> Endpoints:
    """[endpoints] as one host of a cluster sees them: its own journal, heartbeat,
    gateway and marketdata; the matchers wherever they run. Advertised addresses:
    ``bind_endpoint`` turns one of this host's into what its socket binds."""
    here = cluster.host or next(iter(cluster.hosts))
    (matcher_a,) = placed(cluster, "matcher-a")
    matcher_b = (placed(cluster, "matcher-b") or [matcher_a])[0]
    return Endpoints(
        gateway=_tcp(cluster, here, "gateway"),
        matcher_in=_tcp(cluster, matcher_a, "matcher_in"),
        matcher_pub=_tcp(cluster, matcher_a, "matcher_pub"),
        matcher_b_in=_tcp(cluster, matcher_b, "matcher_b_in"),
        matcher_b_pub=_tcp(cluster, matcher_b, "matcher_b_pub"),
        journal_pub=_tcp(cluster, here, "journal_pub"),
        journal_read=_tcp(cluster, here, "journal_read"),
        marketdata_pub=_tcp(cluster, here, "marketdata_pub"),
        marketdata_snapshot=_tcp(cluster, here, "marketdata_snapshot"),
        heartbeat=_tcp(cluster, here, "heartbeat"),
        status_pub=_tcp(cluster, here, "status_pub"),
    )


def is_cluster(cfg: Config) -> bool:
    return bool(cfg.cluster.hosts)


def service_name(cfg: Config, kind: str) -> str:
    """How a service names itself in beats and status: ``journal`` on one host,
    ``journal-a`` on cluster host a (matchers keep their own names)."""
    if not is_cluster(cfg) or kind.startswith("matcher"):
        return kind
    return f"{kind}-{cfg.cluster.host}"


def journals(cfg: Config) -> list[tuple[str, str, str]]:
    """(name, committed-stream PUB, range-read ROUTER) of every journal."""
    cluster = cfg.cluster
    if not cluster.hosts:
        return [("journal", cfg.endpoints.journal_pub, cfg.endpoints.journal_read)]
    return [
        (f"journal-{h}", _tcp(cluster, h, "journal_pub"), _tcp(cluster, h, "journal_read"))
        for h in placed(cluster, "journal")
    ]


def _everywhere(cfg: Config, service: str, port: str) -> list[str]:
    """``service``'s endpoint on every host that runs it, this host's first (on one
    host: [endpoints] ``port``)."""
    cluster = cfg.cluster
    if not cluster.hosts:
        return [cfg.endpoints[port]]
    hosts = placed(cluster, service)
    hosts.sort(key=lambda h: h != cluster.host)
    return [_tcp(cluster, h, port) for h in hosts]


def heartbeats(cfg: Config) -> list[str]:
    """Every heartbeat service's ROUTER: each service beats to all of them."""
    return _everywhere(cfg, "heartbeat", "heartbeat")


def gateways(cfg: Config) -> list[str]:
    """Every gateway's client endpoint, the local host's first: the clients' list."""
    return _everywhere(cfg, "gateway", "gateway")


def marketdata_endpoints(cfg: Config) -> list[tuple[str, str]]:
    """(feed PUB, snapshot ROUTER) of every marketdata service, the local host's first."""
    cluster = cfg.cluster
    if not cluster.hosts:
        return [(cfg.endpoints.marketdata_pub, cfg.endpoints.marketdata_snapshot)]
    hosts = placed(cluster, "marketdata")
    hosts.sort(key=lambda h: h != cluster.host)
    return [
        (_tcp(cluster, h, "marketdata_pub"), _tcp(cluster, h, "marketdata_snapshot")) for h in hosts
    ]


def etcd_endpoints(cfg: Config) -> list[str]:
    """Every etcd member's client URL, the local host's first."""
    cluster = cfg.cluster
    hosts = placed(cluster, "etcd")
    hosts.sort(key=lambda h: h != cluster.host)
    return [f"http://{cluster.hosts[h].address}:{cluster.ports.etcd_client}" for h in hosts]


def bind_endpoint(cfg: Config, endpoint: str) -> str:
    """What a socket of this host binds for an advertised ``endpoint``: the host's
    ``bind`` interface instead of its address when one is set."""
    cluster = cfg.cluster
    if not cluster.hosts or not cluster.host:
        return endpoint
    spec = cluster.hosts[cluster.host]
    prefix = f"tcp://{spec.address}:"
    if spec.bind and endpoint.startswith(prefix):
        return f"tcp://{spec.bind}:" + endpoint[len(prefix) :]
    return endpoint


def load(path: str | Path | None = None, home: Path | None = None) -> Config:
    """Read ``path``, else ``$EXCHANGE_CONFIG``, else config/default.toml."""
    path = Path(path or os.environ.get("EXCHANGE_CONFIG") or DEFAULT_CONFIG)
    with path.open("rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse(raw, home)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def effective(cfg: Config) -> dict:
    """The configuration in force, as plain data (what `exchange config show` prints):
    every section with every key, money in price units, enums by name."""

    def plain(value):
        if isinstance(value, Stp):
            return value.name.lower()
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return value

    out: dict = {"home": str(cfg.home)}
    for name in SECTIONS:
        section = getattr(cfg, name)
        out[name] = {f.name: plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    out["cluster.ports"] = out["cluster"].pop("ports")  # a table of its own, as in TOML
    out["symbols"] = {
        name: {
            f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "symbol"
        }
        for name, spec in cfg.symbols.items()
    }
    return out


def matcher_endpoints(cfg: Config, instance: str) -> tuple[str, str]:
    """(command ROUTER, event PUB) endpoints of matcher instance ``instance`` (a or b)."""
    if instance == "a":
        return cfg.endpoints.matcher_in, cfg.endpoints.matcher_pub
    return cfg.endpoints[f"matcher_{instance}_in"], cfg.endpoints[f"matcher_{instance}_pub"]
