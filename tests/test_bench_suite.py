"""`exchange bench all --quick`: every benchmark runs for real, and the JSON keys that
scripts rely on, the Markdown report and the plot all come out (figures not judged)."""

from __future__ import annotations

import json

from tests.mesh import exchange_cli, write_config


def test_bench_all_writes_json_report_and_plot(short_home):
    out = short_home / "results"
    done = exchange_cli(
        "bench",
        "all",
        "--quick",
        "--out",
        str(out),
        "--json",
        home=short_home,
        config_path=write_config(short_home),
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    printed = json.loads(done.stdout)
    on_disk = json.loads((out / "results.json").read_text())
    assert printed == on_disk
    for name in ("engine", "seed", "sustained", "failover"):
        assert json.loads((out / f"{name}.json").read_text()) == on_disk[name]
    engine = on_disk["engine"]
    assert engine["commands_per_s"] > 0
    # the bare loop ran the same flow in the same process: the engine as a fraction of it
    assert engine["bare_commands_per_s"] > 0 and engine["python_loop_ns"] > 0
    ratio = engine["commands_per_s"] / engine["bare_commands_per_s"]
    assert abs(engine["engine_vs_bare"] - ratio) < 0.002, engine
    rows = on_disk["seed"]["rows"]
    assert [r["n"] for r in rows] == [1, 2]
    assert all(r["avg_s"] > 0 and r["stdev_s"] >= 0 for r in rows)
    sustained = on_disk["sustained"]
    assert sustained["max_orders_per_s"] > 0
    assert [run["fsync"] for run in sustained["runs"]] == [True, False]
    for run in sustained["runs"]:
        for rate in run["rates"]:
            assert rate["accepted"] > 0 and rate["unanswered"] == 0
            assert 0 < rate["p50_ms"] <= rate["p99_ms"] <= rate["p999_ms"] <= rate["max_ms"]
            assert rate["loop_ns"] > 0  # the host's speed beside each latency
            assert rate["load_cpu_us"] > 0  # and what the load took from it
            # and each of the exchange's processes per order, from /proc/<pid>/stat
            cpu = rate["service_cpu_us"]
            assert {"gateway", "matcher-a", "matcher-b", "journal", "marketdata"} <= set(cpu)
            # the primary matcher works (which one, if the loaded host made a failover)
            assert cpu["gateway"] > 0 and cpu["matcher-a"] + cpu["matcher-b"] > 0, cpu
            parts = sum(v for k, v in cpu.items() if k != "total")
            assert abs(cpu["total"] - parts) < 0.5, cpu
            # --quick runs each rate twice: the row is the run with the upper-middle p99
            p99s = [r["p99_ms"] for r in rate["repeats"]]
            assert len(p99s) == 2 and rate["p99_ms"] == max(p99s), rate
            # the relay's runs at the same rate, and the mesh's latency as multiples
            assert 0 < rate["floor_p50_ms"] <= rate["floor_p99_ms"], rate
            assert rate["floor_unanswered"] == 0 and len(rate["floor_repeats"]) == 2
            assert rate["p50_vs_floor"] == round(rate["p50_ms"] / rate["floor_p50_ms"], 2)
            assert rate["p99_vs_floor"] == round(rate["p99_ms"] / rate["floor_p99_ms"], 2)
    failover = on_disk["failover"]
    assert failover["lost"] == 0 and failover["duplicated"] == 0
    assert set(failover["unavailability_ms"]) >= {"p50", "max"}
    report = (out / "report.md").read_text()
    for heading in ("## Targets", "## Engine", "Figure 2", "## Sustained", "## Failover"):
        assert heading in report
    assert "host loop ns" in report and "load CPU" in report and "median run" in report
    assert "services CPU" in report
    assert "latency.png" in report
    assert "bare loop" in report and "### Against the floor" in report
    assert "p99 / floor" in report
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[4/4] failover done" in done.stderr  # progress goes to stderr, JSON to stdout
    assert "floor: achieved" in done.stderr
