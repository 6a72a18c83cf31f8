"""The benchmark report: Markdown tables and a latency plot made from the results JSON.

Pure functions of the results (no measuring here), so a report can be remade from
the JSON files in ``bench/results/`` alone. The targets are the issues' numbers;
whether each is met is computed from the results, never written in by hand. Beside
the absolute figures stand the floors measured in the same run (the bare matching
loop, the bare relay) and the ratios to them, which hold from host to host where the
absolute figures do not (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path

from clients.bench import sustained

PLOT = "latency.png"


def targets(results: dict) -> list[tuple[str, str, bool]]:
    """(target, what we measured, met?) for every result present."""
    out: list[tuple[str, str, bool]] = []
    if "engine" in results:
        rate = results["engine"]["commands_per_s"]
        out.append(("engine ≥ 250,000 commands/s", f"{rate:,}", rate >= 250_000))
    if "seed" in results:
        rows = {r["n"]: r for r in results["seed"]["rows"]}
        if 15 in rows:
            avg = rows[15]["avg_s"] * 1000
            out.append(("seed N=15 < 30 ms per client", f"{avg:.1f} ms", avg < 30))
    if "sustained" in results:
        s = results["sustained"]
        top = s["max_orders_per_s"]
        out.append(("sustained ≥ 20,000 orders/s, fsync on", f"{top:,}/s", top >= 20_000))
        at_10k = [r for r in s["rates"] if r["offered_per_s"] == 10_000]
        if at_10k:
            p99 = at_10k[0]["p99_ms"]
            out.append(("p99 < 2 ms at 10,000 orders/s, fsync on", f"{p99:.2f} ms", p99 < 2))
    if "failover" in results:
        f = results["failover"]
        u = f["unavailability_ms"]
        out.append(("failover p50 ≤ 500 ms", f"{u['p50']} ms", u["p50"] <= 500))
        out.append(("failover max ≤ 1 s", f"{u['max']} ms", u["max"] <= 1000))
        clean = f["lost"] == 0 and f["duplicated"] == 0
        out.append(("failover: 0 lost, 0 duplicated", f"{f['lost']}, {f['duplicated']}", clean))
    return out


def ratios(results: dict) -> list[tuple[str, str]]:
    """(what, ratio) of each figure to the floor measured beside it in the same run."""
    out: list[tuple[str, str]] = []
    engine = results.get("engine", {})
    if "engine_vs_bare" in engine:
        out.append(("engine / bare matching loop, commands/s", f"{engine['engine_vs_bare']:.3f}"))
    for run in results.get("sustained", {}).get("runs", ()):
        for r in run["rates"]:
            if "p99_vs_floor" in r:
                offered = f"{r['offered_per_s']:,}/s" if r["offered_per_s"] else "max"
                out.append(
                    (
                        f"mesh / relay at {offered}, fsync {'on' if run['fsync'] else 'off'}",
                        f"p50 {r['p50_vs_floor']:.1f}x, p99 {r['p99_vs_floor']:.1f}x, "
                        f"throughput {r['achieved_vs_floor']:.3f}",
                    )
                )
    return out


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def markdown(results: dict, plot: bool) -> str:
    meta = results.get("meta", {})
    lines = [
        "# Benchmark report",
        "",
        f"Made by `make bench` (`exchange bench all`) at {meta.get('finished', '?')} on "
        f"{meta.get('cpus', '?')} CPUs, Python {meta.get('python', '?')}, commit "
        f"`{meta.get('commit', '?')}`. Every figure comes from the JSON beside this file.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "measured", "met"],
        [[t, m, "yes" if ok else "**no**"] for t, m, ok in targets(results)],
    )
    if "engine" in results:
        e = results["engine"]
        lines += ["## Engine (in-process)", ""]
        lines += _table(
            [
                "commands/s (best)",
                "every run",
                "bare loop commands/s (best)",
                "engine / bare",
                "p50 µs",
                "p99 µs",
                "python_loop_ns",
            ],
            [
                [
                    f"{e['commands_per_s']:,}",
                    ", ".join(f"{r:,}" for r in e["runs_commands_per_s"]),
                    f"{e['bare_commands_per_s']:,}" if "bare_commands_per_s" in e else "-",
                    e.get("engine_vs_bare", "-"),
                    e["p50_us"],
                    e["p99_us"],
                    e["python_loop_ns"],
                ]
            ],
        )
    if "seed" in results:
        lines += [
            "## The seed's Figure 2 (full mesh, fsync on)",
            "",
            "Per-client time for 20 orders, first send to last acknowledgement.",
            "",
        ]
        lines += _table(
            ["N clients", "average (s)", "std dev (s)", "seed paper avg (s)", "seed paper std (s)"],
            [
                [r["n"], r["avg_s"], r["stdev_s"], r["seed_avg_s"], r["seed_stdev_s"]]
                for r in results["seed"]["rows"]
            ],
        )
    if "sustained" in results:
        s = results["sustained"]
        lines += [
            "## Sustained load (open loop, order to acknowledgement)",
            "",
            f"{s['processes']} load process(es), {s['duration_s']:g} s per rate"
            + (
                f", each rate {s['repeat']} times: a row is its median run (by p99)"
                if s.get("repeat", 1) > 1
                else ""
            )
            + ". `max` is closed loop.",
            "",
        ]
        rows = []
        for run in s["runs"]:
            for r in run["rates"]:
                offered = f"{r['offered_per_s']:,}" if r["offered_per_s"] else "max"
                rows.append(
                    [
                        "on" if run["fsync"] else "off",
                        offered,
                        f"{r['achieved_per_s']:,}",
                        r["p50_ms"],
                        r["p99_ms"],
                        r["p999_ms"],
                        r["max_ms"],
                        r["rejected"],
                        sustained.one_decimal(r.get("steal_pct")),
                        sustained.one_decimal(r.get("loop_ns")),
                        sustained.one_decimal(r.get("load_cpu_us")),
                        sustained.one_decimal(r.get("service_cpu_us", {}).get("total")),
                        sustained.p99_of_runs(r) or "-",
                    ]
                )
        lines += _table(
            [
                "fsync",
                "offered/s",
                "achieved/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "rej",
                "host steal %",
                "host loop ns",
                "load CPU µs/order",
                "services CPU µs/order",
                "p99 of each run",
            ],
            rows,
        )
        floor_rows = [
            [
                "on" if run["fsync"] else "off",
                f"{r['offered_per_s']:,}" if r["offered_per_s"] else "max",
                f"{r['achieved_per_s']:,}",
                f"{r['floor_achieved_per_s']:,}",
                r["p50_ms"],
                r["floor_p50_ms"],
                f"{r['p50_vs_floor']:.1f}",
                r["p99_ms"],
                r["floor_p99_ms"],
                f"{r['p99_vs_floor']:.1f}",
            ]
            for run in s["runs"]
            for r in run["rates"]
            if "floor_p50_ms" in r
        ]
        if floor_rows:
            lines += [
                "### Against the floor",
                "",
                "The floor is the same load, alternating with the mesh's runs, through a "
                "bare relay: the same processes, sockets, codec and group-commit "
                "`fdatasync`, no exchange logic (`clients/bench/relay.py`). The ratios "
                "say what the exchange adds, on any host.",
                "",
            ]
            lines += _table(
                [
                    "fsync",
                    "offered/s",
                    "achieved/s",
                    "floor achieved/s",
                    "p50 ms",
                    "floor p50 ms",
                    "p50 / floor",
                    "p99 ms",
                    "floor p99 ms",
                    "p99 / floor",
                ],
                floor_rows,
            )
        if plot:
            lines += [f"![latency against offered load]({PLOT})", ""]
    if "failover" in results:
        f = results["failover"]
        u = f["unavailability_ms"]
        lines += ["## Failover (SIGKILL the primary under load)", ""]
        lines += _table(
            ["failovers", "orders acked", "p50 ms", "max ms", "every failover ms", "lost", "dup"],
            [
                [
                    f["failovers"],
                    f["orders"],
                    u["p50"],
                    u["max"],
                    ", ".join(str(x) for x in u["all"]),
                    f["lost"],
                    f["duplicated"],
                ]
            ],
        )
    return "\n".join(lines)


def plot_latency(sustained: dict, path: Path) -> None:
    """p50/p99/p99.9 against achieved load, one colour per fsync setting, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for run, colour in zip(sustained["runs"], ("tab:red", "tab:blue"), strict=False):
        rows = sorted(run["rates"], key=lambda r: r["achieved_per_s"])
        x = [r["achieved_per_s"] for r in rows]
        label = "fsync on" if run["fsync"] else "fsync off"
        for key, style, name in (
            ("p50_ms", "-", "p50"),
            ("p99_ms", "--", "p99"),
            ("p999_ms", ":", "p99.9"),
        ):
            ax.plot(
                x, [r[key] for r in rows], style, color=colour, marker="o", label=f"{label} {name}"
            )
        # the relay's at the same offered rates (its "max" is far to the right: left out)
        floor_rows = [r for r in rows if "floor_p99_ms" in r and r["offered_per_s"]]
        if floor_rows:
            fx = [r["floor_achieved_per_s"] for r in floor_rows]
            for key, style, name in (("floor_p50_ms", "-", "p50"), ("floor_p99_ms", "--", "p99")):
                ax.plot(
                    fx,
                    [r[key] for r in floor_rows],
                    style,
                    color=colour,
                    alpha=0.35,
                    linewidth=1,
                    label=f"{label} floor {name}",
                )
    ax.set_yscale("log")
    ax.set_xlabel("acknowledged orders/s")
    ax.set_ylabel("order → acknowledgement latency (ms)")
    ax.set_title("Latency against load (open loop; the rightmost point of each is 'max')")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(results: dict, out: Path) -> Path:
    """report.md (and the plot, when there is a sustained result) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plot = "sustained" in results
    if plot:
        plot_latency(results["sustained"], out / PLOT)
    path = out / "report.md"
    path.write_text(markdown(results, plot) + "\n")
    return path
