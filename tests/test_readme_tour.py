"""The README's "A first trade" and "The 5-minute tour", run as written: each shell line
of the two blocks is taken from README.md and run by bash (`make run` is `exchange up`,
the same command; `.venv/bin/exchange` is this checkout's), the TUI step is typed
through textual's pilot at 80x24, the prompt step on stdin, and every effect the
README promises is checked (a fill, the tape, positions, the makers' ladder moving,
a matcher killed and replaced at the next epoch, trading going on)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mesh import cli_env, stop_supervised, wait_for, write_config

textual = pytest.importorskip("textual")

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXCHANGE = f"{sys.executable} -m clients.cli"


def section(title: str) -> list[str]:
    """The shell lines of the README section's code blocks: continuations joined,
    comments kept apart as (command, comment)."""
    body = README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.S):
        pending = ""
        for raw in block.splitlines():
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            lines.append(pending + raw)
            pending = ""
    return [line for line in lines if line.strip()]


class Shell:
    """Runs README lines as a reader would, in one environment: exports stick,
    `&` lines run in the background (stopped by their process group at the end)."""

    def __init__(self, home: Path, config_path: Path) -> None:
        self.home, self.config_path = home, config_path
        self.env = cli_env(home, config_path)
        self.background: list[subprocess.Popen] = []

    def line(self, text: str) -> tuple[str, str]:
        command, _, comment = text.partition("  #")
        return command.strip(), comment.strip()

    def run(self, command: str, input: str | None = None) -> subprocess.CompletedProcess:
        if command.startswith("export "):
            for pair in shlex.split(command[len("export ") :]):
                key, _, value = pair.partition("=")
                self.env[key] = value
            return subprocess.CompletedProcess(command, 0, "", "")
        command = {"make run": f"{EXCHANGE} up", "make down": f"{EXCHANGE} down"}.get(
            command, command
        )
        command = command.replace(".venv/bin/exchange", EXCHANGE)
        if command.endswith("&"):
            self.background.append(
                subprocess.Popen(
                    ["bash", "-c", command[:-1] + " --status-every 0"],
                    cwd=ROOT,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            return subprocess.CompletedProcess(command, 0, "", "")
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=90,
            input=input,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """`exchange ARGS` in this environment (plus ``env``), whatever its exit code."""
        return subprocess.run(
            [*EXCHANGE.split(), *args],
            cwd=ROOT,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def stop(self) -> None:
        for proc in self.background:  # Ctrl-C: each maker cancels its quotes and exits
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.background:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        down = stop_supervised(self.home, self.config_path)
        assert down.returncode == 0, down.stdout + down.stderr


def json_log(home: Path, service: str) -> list[dict]:
    """A service's log lines (JSON objects), as supervisord files them."""
    lines = (home / "log" / f"{service}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def book(shell: Shell, symbol: str) -> dict:
    return json.loads(shell.run(f"{EXCHANGE} book {symbol} --json").stdout)


def test_a_first_trade_as_written(short_home):
    shell = Shell(short_home, write_config(short_home))
    lines = section("A first trade")
    try:
        outs = {}
        for text in lines:
            command, _ = shell.line(text)
            outs[command] = shell.run(command).stdout
        assert "order entry:" in outs["make run"]
        assert "accepted: order" in outs[".venv/bin/exchange buy AAPL 100 170.50"]
        assert "170.50" in outs[".venv/bin/exchange book AAPL"]
        positions = json.loads(outs[".venv/bin/exchange positions --json"])
        assert isinstance(positions["USD"], str)  # exact money, not a float
        status = outs[".venv/bin/exchange status"]
        assert "primary" in status
        table = status.split("\n\n")[0].splitlines()[1:]  # header and one row a service
        assert len({len(line) for line in table}) == 1, status  # the columns line up
        # a symbol the exchange does not list: the same answer from book and buy
        for args in (["book", "NOPE"], ["buy", "NOPE", "1", "1.00"]):
            unknown = shell.cli(*args)
            assert unknown.returncode == 1 and "unknown symbol" in unknown.stderr, unknown
        # mistakes: a usage line (exit 2), a reject with the figures, both logged
        bad = shell.cli("buy", "AAPL", "10", "abc", EXCHANGE_USER="alice")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        off_tick = shell.cli("buy", "AAPL", "10", "170.005", EXCHANGE_USER="alice")
        assert off_tick.returncode == 1 and "tick is 0.01" in off_tick.stderr
        banded = shell.cli("buy", "AAPL", "10", "250.00", EXCHANGE_USER="alice")
        assert banded.returncode == 1 and "153.00 - 187.00" in banded.stderr, banded.stderr
        wrong = shell.cli("orders", EXCHANGE_USER="alice", EXCHANGE_PASSWORD="Wrong.pw1")
        assert wrong.returncode == 1
        logged = json_log(short_home, "gateway")
        events = {(e["event"], e.get("code"), e.get("by"), e.get("symbol")) for e in logged}
        assert ("reject", "BAD_PRICE", "gateway", "AAPL") in events
        assert ("reject", "PRICE_BAND", "matcher", "AAPL") in events
        assert any(e["event"] == "login_failed" and e["name"] == "alice" for e in logged)
        # up again: one line that says so, not the whole banner
        again = shell.run("make run")
        assert "already running" in again.stderr and "order entry:" not in again.stdout
    finally:
        shell.stop()


async def _tui_step(shell: Shell, text: str) -> dict:
    """`exchange tui --symbol AAPL --create-account`, then what the README's comment
    says to type: F2, `buy 300 170.30`, Enter."""
    from textual.widgets import DataTable, RichLog

    from clients import settings
    from clients.client import Client
    from clients.tui.app import ExchangeApp
    from clients.tui.widgets import BookView, TapeView

    args = shlex.split(text.split("exchange tui", 1)[1])
    assert args == ["--symbol", "AAPL", "--create-account"]
    cfg = settings.load(shell.config_path, home=shell.home)
    name, password = shell.env["EXCHANGE_USER"], shell.env["EXCHANGE_PASSWORD"]
    client = Client(cfg.endpoints["gateway"], timeout=10)
    client.open_account(name, password, create=True)
    app = ExchangeApp(cfg, client, "AAPL", credentials=(name, password))
    seen: dict = {}
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(BookView)
            await until(pilot, lambda: "feed seq" in getattr(view, "text", ""), "the book")
            await until(pilot, lambda: app.book.asks() and app.book.bids(), "the makers' quotes")
            seen["ask_before"] = app.book.asks()[0][0]
            seen["bid_before"] = app.book.bids()[0][0]
            comment = text.split("#", 1)[1] if "#" in text else ""
            typed = re.search(r"type\s+(.+?)\s+and Enter", comment + README).group(1)
            assert typed == "buy 300 170.30"
            await pilot.press("f2", *typed, "enter")
            log = app.query_one("#log-view", RichLog)
            positions = app.query_one("#positions-table", DataTable)
            tape = app.query_one(TapeView)
            await until(pilot, lambda: "FILL" in "\n".join(app.model.log), "the fill in the log")
            await until(pilot, lambda: "@ 170." in tape.text.split("\n", 1)[-1], "the tape")
            await until(
                pilot,
                lambda: positions.row_count and positions.get_row_at(0)[:2] == ["AAPL", "+300"],
                "the position",
            )
            await until(
                pilot,
                lambda: app.book.bids() and app.book.bids()[0][0] > seen["bid_before"],
                "the makers' ladder to move away (up) after our buy",
                timeout=20,
            )
            await pilot.press("f5")
            await pilot.pause(0.2)
            seen["log_width"] = log.scrollable_content_region.width
            seen["log_lines"] = [strip.text for strip in log.lines]
            seen["model_log"] = list(app.model.log)
            seen["screen"] = app.export_screenshot()
            app.exit()
    finally:
        client.close()
    return seen


async def until(pilot, predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def test_the_five_minute_tour_as_written(short_home):
    shell = Shell(short_home, write_config(short_home))
    lines = section("The 5-minute tour")
    try:
        for text in lines:
            command, comment = shell.line(text)
            if "exchange tui" in command:
                seen = asyncio.run(asyncio.wait_for(_tui_step(shell, text), 90))
                # at 80x24 the log wraps whole words: no line wider than its pane, and
                # no price cut in two (each price the log holds is whole on one line)
                assert all(len(line) <= seen["log_width"] for line in seen["log_lines"])
                shown = "\n".join(seen["log_lines"])
                prices = re.findall(r"\d+\.\d\d", "\n".join(seen["model_log"]))
                assert prices and all(p in shown for p in prices), shown
                continue
            if command.endswith("exchange trade"):
                typed = comment.split(", ")  # buy AAPL 100 170.10, orders, fills, book AAPL, quit
                out = shell.run(command, input="\n".join(typed) + "\n").stdout
                assert "accepted: order" in out and "Traceback" not in out
                assert "taker" in out  # `fills`: the TUI's buy took the makers' offers
                continue
            if command.startswith("kill -9"):
                before = json.loads(shell.run(f"{EXCHANGE} status --json").stdout)
                epoch = before["epoch"]
                shell.run(command)
                wait_for(
                    lambda epoch=epoch: (
                        json.loads(shell.run(f"{EXCHANGE} status --json").stdout)["epoch"]
                        == epoch + 1
                    ),
                    timeout=30,
                    what="the standby promoted at epoch + 1",
                )
                # the heartbeat's JSON log tells the story, with the epochs
                beats = json_log(short_home, "heartbeat")
                lost = [e for e in beats if e["event"] == "service_lost"]
                assert any(e["role"] == "primary" and e["epoch"] == before["epoch"] for e in lost)
                assert any(
                    e["event"] == "promote" and e["epoch"] == before["epoch"] + 1 for e in beats
                )
                continue
            if command == "make down":
                continue  # the finally below stops it, after the makers
            out = shell.run(command)
            if command.endswith("exchange status") and "epoch" not in text:
                assert "primary" in out.stdout
            if "--create-account --symbols" in command:
                symbols = command.split("--symbols ")[1].split()[0].split(",")
                for symbol in symbols:
                    wait_for(lambda s=symbol: book(shell, s)["asks"], 30, what=f"{symbol} quotes")
            if "exchange trades AAPL" in command:
                assert re.search(r"\d+\s+\d+\s+170\.\d\d", out.stdout), out.stdout
            if "exchange buy TSLA 50 160.10" in command:
                assert "fill" in out.stdout, out.stdout  # fills against mm1
        status = shell.run(f"{EXCHANGE} status").stdout
        assert "primary" in status and "standby" in status
    finally:
        shell.stop()
