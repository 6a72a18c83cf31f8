"""The `exchange` command: one entry point for operators, traders, scripts and benchmarks.

Subcommands are public interfaces (scripts rely on their names, flags and JSON keys);
see docs/cli.md before renaming anything.
"""

from __future__ import annotations

import argparse
import json
import sys


def _bench_engine(args: argparse.Namespace) -> int:
    from clients.bench import engine

    result = engine.run(commands=args.commands, seed=args.seed)
    print(json.dumps(result) if args.json else engine.render(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exchange", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks that print numbers (--json for tools)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    eng = bench_sub.add_parser("engine", help="the pure engine, in-process, synthetic flow")
    eng.add_argument("--commands", type=int, default=200_000)
    eng.add_argument("--seed", type=int, default=1)
    eng.add_argument("--json", action="store_true", help="one JSON object on stdout")
    eng.set_defaults(func=_bench_engine)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
