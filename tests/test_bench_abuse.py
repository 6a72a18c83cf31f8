"""`exchange bench abuse`, shortened: the adversarial soak `make test` runs every time.

The real command, on a mesh of its own: six kinds of attackers using valid requests
beside an honest trader; the honest trader's p99 under attack must stay within 3x of
its p99 alone in the same run, no service may die or restart, and the owner of the
name the log-in flood targets must still log in. The full soak is
`exchange bench abuse` (10 minutes by default)."""

from __future__ import annotations

import json

from tests.mesh import exchange_cli


def test_short_abuse_soak_keeps_the_honest_trader_within_3x(short_home):
    run = exchange_cli(
        "bench", "abuse", "--duration", "20", "--baseline", "10", "--json",
        home=short_home, config_path=short_home / "unused.toml", timeout=240,
    )  # fmt: skip
    assert run.stdout, run.stderr
    result = json.loads(run.stdout)
    assert result["restarted"] == [] and all(result["services_alive"].values()), result
    assert result["baseline"]["requests"] >= 900 and result["attack"]["requests"] >= 1800
    assert result["p99_ratio"] <= 3.0, result
    assert result["honest_login_ms"] is not None and result["honest_login_ms"] < 10_000
    attackers = result["attackers"]
    assert set(attackers) == {
        "flood", "fok_scan", "wash", "login_flood", "slow_subscribers", "snapshot_flood"
    }  # fmt: skip
    assert not any(k.startswith("error") for c in attackers.values() for k in c), attackers
    assert attackers["wash"].get("reject_5", 0) > 0  # the walk hit the static band
    assert attackers["login_flood"].get("reply_21", 0) > 0  # TOO_MANY_ATTEMPTS
    assert run.returncode == 0
