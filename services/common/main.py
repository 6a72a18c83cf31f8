"""The thin shell every service's ``__main__`` shares: flags, config, logging, run."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import zmq

from services.common import config, curve, logs, runtime


def service_main(name: str, build: Callable, instance: bool = False) -> int:
    """Parse ``--config`` (and ``--instance`` for matchers), set up JSON logging, and
    run ``build(cfg, log[, instance]).run()``."""
    parser = argparse.ArgumentParser(prog=f"services.{name}")
    parser.add_argument("--config", default=None, help="TOML config (default: built in)")
    if instance:
        parser.add_argument("--instance", default="a", help="which of the pair (a or b)")
    args = parser.parse_args()
    log = logs.setup(name)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:  # one line naming the key: `exchange up` shows it
        log.error("bad_config", error=str(exc))
        return 2
    curve.use_for_services(cfg)  # CURVE on the tcp:// links to other services
    ctx = zmq.Context.instance()
    runtime.batch_io_threads(ctx)
    # a peer that restarts (failover, supervisord) is found again within ~10 ms, not
    # ZeroMQ's default 100 ms; backing off to 500 ms while it stays away
    ctx.setsockopt(zmq.RECONNECT_IVL, 10)
    ctx.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
    service = build(cfg, log, args.instance) if instance else build(cfg, log)
    profile_dir = os.environ.get("EXCHANGE_PROFILE_DIR")
    if not profile_dir:
        return service.run()
    # a developer's look inside the loop: cProfile for the whole run, written at exit
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(service.run)
    finally:
        tag = name + (f"-{args.instance}" if instance else "")
        profiler.dump_stats(os.path.join(profile_dir, f"{tag}.prof"))
