"""Every service's metrics, scraped from the real processes: the key series move with
trading, every series is documented in docs/operations.md, and `exchange status` shows
the key figures."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from clients import scrape
from clients.client import ExchangeError
from services.common.wire import Reject, Side
from tests.mesh import exchange_cli, running, trader, wait_for

DOC = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()


def value(samples, name: str, **labels) -> float:
    return sum(v for n, lb, v in samples if n == name and labels.items() <= lb.items())


def test_every_service_exports_its_metrics_and_status_shows_the_key_ones(short_home):
    with running(short_home, standby=True) as mesh:
        ports, host = mesh.cfg.metrics.ports, mesh.cfg.metrics.host
        assert set(ports) == {"gateway", "matcher-a", "matcher-b", "journal", "marketdata",
                              "heartbeat"}  # fmt: skip
        buyer, seller = trader(mesh, "mbuy"), trader(mesh, "msell")
        for _ in range(10):
            buyer.place("AAPL", Side.BUY, 1, 1_700_000)
            seller.place("AAPL", Side.SELL, 1, 1_700_000)
        with contextlib.suppress(ExchangeError):  # outside the band: counted
            buyer.place("AAPL", Side.BUY, 1, 2_500_000)
        samples = {}
        wait_for(
            # a service whose endpoint is not up yet is asked again, not remembered empty
            lambda: all(
                samples.get(s) or samples.update({s: scrape.scrape(host, p)}) or samples[s]
                for s, p in ports.items()
            ),  # fmt: skip
            timeout=30,
            what="every metrics endpoint",
        )
        samples = {s: scrape.scrape(host, p) for s, p in ports.items()}
        gateway, journal = samples["gateway"], samples["journal"]
        assert value(gateway, "exchange_requests_in_total") >= 21
        assert value(gateway, "exchange_rejects_total", code="PRICE_BAND", by="matcher") == 1
        assert value(journal, "exchange_records_committed_total") >= 22
        assert value(journal, "exchange_fsync_seconds_count") >= 1
        primary = [s for s in ("matcher-a", "matcher-b") if value(samples[s], "exchange_primary")]
        assert len(primary) == 1
        assert value(samples[primary[0]], "exchange_commands_sequenced_total") >= 22
        assert value(samples["marketdata"], "exchange_feed_messages_total") > 0
        names = {n for rows in samples.values() for n, _, _ in rows}
        bases = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
                 for n in names if not n.startswith(("python_", "process_"))}  # fmt: skip
        assert bases and all(f"`{b}`" in DOC for b in bases), bases - {
            b for b in bases if f"`{b}`" in DOC
        }
        assert Reject.PRICE_BAND.name in {lb.get("code") for _, lb, _ in gateway}

        status = exchange_cli(
            "status", "--json", home=mesh.home, config_path=mesh.config_path
        )  # fmt: skip
        shown = {s["service"]: s["metrics"] for s in json.loads(status.stdout)["services"]}
        assert shown["gateway"]["rejects"] >= 1 and shown["journal"]["committed"] >= 22
        human = exchange_cli("status", home=mesh.home, config_path=mesh.config_path).stdout
        assert "key metrics" in human and "fsync p99 ms" in human
