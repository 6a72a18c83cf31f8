"""The `exchange` command: one entry point for operators, traders, scripts and benchmarks.

Subcommands are public interfaces (scripts rely on their names, flags and JSON keys);
docs/cli.md lists them; keep them stable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _bench_engine(args: argparse.Namespace) -> int:
    from clients.bench import engine

    result = engine.run(commands=args.commands, seed=args.seed, repeat=args.repeat)
    print(json.dumps(result) if args.json else engine.render(result))
    return 0


def _journal_tools(sub) -> None:
    try:
        from services.journal import tools
    except ImportError:  # pragma: no cover - the journal tools ship with the journal
        return
    journal = sub.add_parser("journal", help="offline journal tools: verify, dump, replay")
    tools.register(journal.add_subparsers(dest="journal", required=True))


def _bench_failover(args: argparse.Namespace) -> int:
    from clients.bench import failover

    result = failover.run(failovers=args.failovers, interval=args.interval)
    print(json.dumps(result) if args.json else failover.render(result))
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


def _bench_cluster(args: argparse.Namespace) -> int:
    from clients.bench import hostbench

    rates = tuple(None if r == "max" else int(r) for r in args.rates.split(","))
    result = hostbench.run(rates, args.duration, args.kills, fsync=not args.no_fsync)
    print(json.dumps(result) if args.json else hostbench.render(result))
    failover = result["host_failover"]
    return 0 if failover["lost"] == 0 and failover["duplicated"] == 0 else 1


def _bench_seed(args: argparse.Namespace) -> int:
    from clients.bench import seed

    result = seed.run(trials=args.trials)
    print(json.dumps(result) if args.json else seed.render(result))
    return 0


def _bench_fix(args: argparse.Namespace) -> int:
    from clients.bench import fix

    result = fix.run(orders=args.orders, window=args.window)
    print(json.dumps(result) if args.json else fix.render(result))
    return 0


def _bench_sustained(args: argparse.Namespace) -> int:
    from clients.bench import sustained

    rates = tuple(None if r == "max" else int(r) for r in args.rates.split(","))
    if args.against:
        from clients.bench import against

        result = against.run(
            args.against,
            rates=rates,
            duration=args.duration or sustained.DURATION_S,
            processes=args.processes,
            rounds=args.repeat,
        )
        print(json.dumps(result) if args.json else against.render(result))
        return 0
    result = sustained.run(
        rates=rates,
        duration=args.duration or sustained.DURATION_S,
        processes=args.processes,
        fsync_off=not args.no_fsync_off,
        repeat=args.repeat,
    )
    print(json.dumps(result) if args.json else sustained.render(result))
    return 0


def _bench_days(args: argparse.Namespace) -> int:
    from clients.bench import days

    if args.against:
        result = days.run_against(args.against, args.days, args.rate, args.seconds)
    else:
        result = days.run(args.days, args.rate, args.seconds)
    print(json.dumps(result) if args.json else days.render(result))
    return 0


def _bench_abuse(args: argparse.Namespace) -> int:
    import sys

    from clients.bench import abuse

    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    kinds = tuple(args.attackers.split(",")) if args.attackers else abuse.ATTACKERS
    result = abuse.run(
        duration=args.duration, baseline=args.baseline, progress=say, attackers=kinds
    )
    print(json.dumps(result) if args.json else abuse.render(result))
    return 0 if result["ok"] else 1


def _bench_all(args: argparse.Namespace) -> int:
    from pathlib import Path

    from clients.bench import suite

    results = suite.run(Path(args.out), quick=args.quick)
    print(json.dumps(results) if args.json else suite.render(results))
    return 0


def _config_show(args: argparse.Namespace) -> int:
    """The configuration in force: $EXCHANGE_CONFIG (or config/default.toml) over the
    defaults, with $EXCHANGE_HOME filled in; a bad file exits 2 naming the key."""
    import sys

    from services.common import config

    try:
        cfg = config.load(args.file)
    except (config.ConfigError, OSError) as exc:
        print(f"exchange config: {exc}", file=sys.stderr)
        return 2
    shown = config.effective(cfg)
    if args.json:
        print(json.dumps(shown))
        return 0
    print(f"# home = {shown.pop('home')}")
    symbols = shown.pop("symbols")
    for section, values in shown.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    for name, values in symbols.items():
        print(f"\n[symbols.{name}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    return 0


def _trade_shell() -> int:
    from clients import shell

    return shell.main()


EPILOG = """environment:
  EXCHANGE_USER, EXCHANGE_PASSWORD  the trading commands' credentials (else a prompt)
  EXCHANGE_HOME                     where a local exchange keeps its files (./var)
  EXCHANGE_CONFIG                   the config file (config/default.toml)

exit codes: 0 done, 1 rejected, 2 usage, 3 no answer.
Every command, flag and JSON key: docs/cli.md"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (what was wrong, then the
    command's usage) and exit 2; subcommands' parsers are made of this class too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        usage = " ".join(self.format_usage().split())
        self.exit(2, f"{self.prog}: {message} ({usage})\n")


def dollars(text: str) -> str:
    """An argparse type: a price in dollars, checked here so a typo is a usage error."""
    from services.common.money import to_units

    try:
        to_units(text.lstrip("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"PRICE must be dollars such as 170.50, not {text!r}"
        ) from None
    return text.lstrip("$")


def size(text: str) -> int:
    """An argparse type: a whole number of shares (1,000 and 1_000 are fine)."""
    cleaned = text.replace(",", "").replace("_", "")
    if not cleaned.isdigit():
        raise argparse.ArgumentTypeError(f"SIZE must be a whole number of shares, not {text!r}")
    return int(cleaned)


def trading_date(text: str) -> int:
    """A YYYYMMDD date for ``--expire``."""
    from datetime import date

    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        day = None
    if len(text) != 8 or not text.isdigit() or day is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYYMMDD")
    return int(text)


def _order(side, args: argparse.Namespace) -> int:
    from clients import trading
    from services.common.wire import Tif

    tif = Tif.GTD if args.expire else args.tif
    return trading.order(
        side,
        args.symbol,
        args.size,
        args.price or "",
        args.json,
        tif=tif,
        expire_date=args.expire or 0,
    )


def order_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"ORDER_ID must be a number, not {text!r}")
    return int(text)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("zmq-exchange")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from clients import admin, keys, statement, trading, tui
    from clients.mm import bot as mm
    from services.common.wire import Side, Tif

    parser = Parser(
        prog="exchange",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"exchange {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, help: str, json_flag: bool = True):
        p = sub.add_parser(name, help=help)
        if json_flag:
            p.add_argument("--json", action="store_true", help="JSON on stdout")
        p.set_defaults(func=func)
        return p

    up = command("up", _operator("up"), "start the mesh under supervisord")
    up.add_argument("--cluster", metavar="FILE", help="a cluster file: start one host's share")
    up.add_argument("--host", help="which host of the cluster file this is")
    command("down", _operator("down"), "stop the mesh")
    command("status", _operator("status"), "every service's role, epoch, seq, lag")
    account = sub.add_parser("account", help="accounts")
    account_sub = account.add_subparsers(dest="account", required=True)
    create = account_sub.add_parser(
        "create", help="create an account (password from EXCHANGE_PASSWORD or a prompt)"
    )
    create.add_argument("name")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=lambda a: trading.account_create(a.name, a.json))
    for side in (Side.BUY, Side.SELL):
        p = command(
            side.name.lower(),
            None,
            f"{side.name.lower()} SYMBOL SIZE [PRICE]: a DAY limit order (no price: market)",
        )
        p.add_argument("symbol")
        p.add_argument("size", type=size, help="shares")
        p.add_argument("price", type=dollars, nargs="?", help="in dollars, e.g. 170.50")
        tifs = p.add_mutually_exclusive_group()
        for flag, tif, text in (
            ("--gtc", Tif.GTC, "good till cancelled: carries over to the next days"),
            ("--ioc", Tif.IOC, "immediate or cancel (continuous trading only)"),
            ("--fok", Tif.FOK, "fill or kill (continuous trading only)"),
            ("--on-close", Tif.CLOSE, "executes only in the closing auction (MOC/LOC)"),
        ):
            tifs.add_argument(flag, dest="tif", action="store_const", const=tif, help=text)
        tifs.add_argument(
            "--expire",
            type=trading_date,
            metavar="YYYYMMDD",
            help="good till date: rests until the end of that trading day (GTD)",
        )
        p.set_defaults(func=lambda a, s=side: _order(s, a), tif=Tif.DAY)
    p = command("cancel", None, "cancel one of your orders")
    p.add_argument("order_id", type=order_id)
    p.set_defaults(func=lambda a: trading.cancel(a.order_id, a.json))
    p = command("book", None, "the order book of a symbol")
    p.add_argument("symbol")
    p.set_defaults(func=lambda a: trading.book(a.symbol, a.json))
    command(
        "sessions",
        lambda a: trading.sessions(a.json),
        "every symbol's session state, trading date and indicative auction",
    )
    command("positions", lambda a: trading.positions(a.json), "your positions and cash")
    command("orders", lambda a: trading.orders(a.json), "your open orders")
    command(
        "trade",
        lambda a: _trade_shell(),
        "an interactive trading prompt (history, tab completion)",
        json_flag=False,
    )
    p = command("fills", None, "your own most recent fills")
    p.add_argument("symbol", nargs="?", default="", help="only this symbol")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=lambda a: trading.fills(a.symbol, a.limit, a.json))
    p = command("trades", None, "the public tape: a symbol's most recent trades")
    p.add_argument("symbol")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=lambda a: trading.trades(a.symbol, a.limit, a.json))
    admin.register(sub)
    statement.register(sub)
    keys.register(sub)
    mm.register(sub)
    tui.register(sub)
    _journal_tools(sub)

    conf = sub.add_parser("config", help="the configuration in force")
    conf_sub = conf.add_subparsers(dest="config", required=True)
    show = conf_sub.add_parser("show", help="every key's value in force (money in price units)")
    show.add_argument("--file", help="a config file (default: $EXCHANGE_CONFIG or the default)")
    show.add_argument("--json", action="store_true", help="one JSON object on stdout")
    show.set_defaults(func=_config_show)
    bench = sub.add_parser("bench", help="benchmarks that print numbers (--json for tools)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    eng = bench_sub.add_parser("engine", help="the pure engine, in-process, synthetic flow")
    eng.add_argument("--commands", type=int, default=200_000)
    eng.add_argument("--seed", type=int, default=1)
    eng.add_argument("--repeat", type=int, default=3, help="throughput runs; the best counts")
    eng.add_argument("--json", action="store_true", help="one JSON object on stdout")
    eng.set_defaults(func=_bench_engine)
    fail = bench_sub.add_parser("failover", help="kill the primary matcher under load")
    fail.add_argument("--failovers", type=int, default=5)
    fail.add_argument("--interval", type=float, default=1.5, help="seconds between kills")
    fail.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fail.set_defaults(func=_bench_failover)
    clu = bench_sub.add_parser(
        "cluster", help="one host beside three (network namespaces), and whole-host failover"
    )
    clu.add_argument("--rates", default="1000,5000,10000,max", help="orders/s, or max")
    clu.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    clu.add_argument("--kills", type=int, default=5, help="whole-host power losses")
    clu.add_argument(
        "--no-fsync",
        action="store_true",
        help="journals do not fsync (both sides): what the disk adds to the latency",
    )
    clu.add_argument("--json", action="store_true", help="one JSON object on stdout")
    clu.set_defaults(func=_bench_cluster)
    seed = bench_sub.add_parser("seed", help="the seed system's Figure 2 on the full mesh")
    seed.add_argument("--trials", type=int, default=5)
    seed.add_argument("--json", action="store_true", help="one JSON object on stdout")
    seed.set_defaults(func=_bench_seed)
    fixb = bench_sub.add_parser("fix", help="orders through the FIX gateway beside the native")
    fixb.add_argument("--orders", type=int, default=5_000, help="orders on each side")
    fixb.add_argument("--window", type=int, default=32, help="orders in flight")
    fixb.add_argument("--json", action="store_true", help="one JSON object on stdout")
    fixb.set_defaults(func=_bench_fix)
    sus = bench_sub.add_parser("sustained", help="open-loop offered load, latency percentiles")
    sus.add_argument("--rates", default="1000,5000,10000,20000,max", help="orders/s, or max")
    sus.add_argument("--duration", type=float, help="seconds per rate (default 10)")
    sus.add_argument("--processes", type=int, default=1, help="load processes")
    sus.add_argument("--no-fsync-off", action="store_true", help="skip the fsync-off pass")
    sus.add_argument(
        "--repeat", type=int, default=1, help="runs per rate; each rate reports its median run"
    )
    sus.add_argument(
        "--against",
        metavar="COMMIT",
        help="alternate with COMMIT's services, --repeat rounds (fsync on, no relay)",
    )
    sus.add_argument("--json", action="store_true", help="one JSON object on stdout")
    sus.set_defaults(func=_bench_sustained)
    day = bench_sub.add_parser(
        "days", help="simulated trading days of steady load: matcher memory, standby restart"
    )
    day.add_argument("--days", type=int, default=10)
    day.add_argument("--rate", type=int, default=2_000, help="orders/s offered each day")
    day.add_argument("--seconds", type=float, default=10.0, help="of load each day")
    day.add_argument("--against", metavar="COMMIT", help="then the same days on COMMIT's services")
    day.add_argument("--json", action="store_true", help="one JSON object on stdout")
    day.set_defaults(func=_bench_days)
    abuse = bench_sub.add_parser(
        "abuse", help="an honest trader's latency beside hostile traders (exit 1 past 3x)"
    )
    abuse.add_argument("--duration", type=float, default=600.0, help="attack seconds")
    abuse.add_argument("--baseline", type=float, help="seconds alone first (duration/5)")
    abuse.add_argument(
        "--attackers",
        help="comma-separated: flood,fok_scan,wash,login_flood,slow_subscribers,"
        "snapshot_flood (default: all)",
    )
    abuse.add_argument("--json", action="store_true", help="one JSON object on stdout")
    abuse.set_defaults(func=_bench_abuse)
    every = bench_sub.add_parser("all", help="every benchmark, JSON + Markdown report + plot")
    every.add_argument("--out", default="bench/results", help="directory for the results")
    every.add_argument("--quick", action="store_true", help="tiny runs to check the path")
    every.add_argument("--json", action="store_true", help="one JSON object on stdout")
    every.set_defaults(func=_bench_all)
    return parser


def _config_error(exc: Exception) -> bool:
    """Whether ``exc`` is the server's ConfigError (only an operator command that
    loaded the server's configuration can raise one; the trading commands never
    import it, so they run without the server's code)."""
    config = sys.modules.get("services.common.config")
    return config is not None and isinstance(exc, config.ConfigError)


def _operator(name: str):
    """`exchange up | down | status`: clients.ops (supervisor, the server's config)
    is imported only when one of them runs."""

    def run(args: argparse.Namespace) -> int:
        from clients import ops

        if name == "up" and args.cluster:
            return ops.up(args.json, cluster_file=args.cluster, host=args.host)
        return getattr(ops, name)(args.json)

    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # a bad configuration file: say which key, no traceback
        if not _config_error(exc):
            raise
        print(f"exchange: configuration: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `exchange book AAPL | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
