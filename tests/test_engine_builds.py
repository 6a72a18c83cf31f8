"""The compiled engine (`make` builds it with Cython) against the pure-Python reference.

The same seeded flows of every kind of command go through both builds, each in its own
process: every event's bytes, the state hash and the snapshot must be identical. The
engine's own tests then run again on the pure build (this suite's other tests run on
whichever build this process imported: the compiled one after `make`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.matcher.compiled import PURE_ENV, running_compiled

ROOT = Path(__file__).resolve().parents[1]
ENGINE_TESTS = [
    "tests/test_engine_properties.py",
    "tests/test_engine_hardening.py",
    "tests/test_engine_rejects.py",
    "tests/test_engine_admin.py",
    "tests/test_engine_security_props.py",
    "tests/test_exactly_once.py",
    "tests/test_snapshot.py",
    "tests/test_replay_fixture.py",
    "tests/test_trading_day.py",
    "tests/test_auction_props.py",
]

needs_compiled = pytest.mark.skipif(
    not running_compiled(), reason="the compiled engine is not built (`make install` builds it)"
)


def _run_flow(seed: int, count: int, pure: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "tests.engine_builds", str(seed), str(count)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout)


@needs_compiled
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_both_builds_give_the_same_events_state_and_snapshot(seed):
    compiled = _run_flow(seed, 20_000, pure=False)
    pure = _run_flow(seed, 20_000, pure=True)
    assert compiled.pop("compiled") is True
    assert pure.pop("compiled") is False
    assert compiled["events"] > 20_000
    assert compiled == pure


def test_the_engine_tests_pass_on_the_pure_build():
    env = {**os.environ, PURE_ENV: "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *ENGINE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout.splitlines()[-1]


@needs_compiled
def test_an_edited_source_runs_pure_until_rebuilt(tmp_path):
    """A build is used only for the sources it was made from: a copy of the package
    runs compiled, and pure once one .pxd in it changes."""
    import shutil

    copy = tmp_path / "services"
    shutil.copytree(ROOT / "services", copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "from services.matcher import compiled, engine;"
        "print(compiled.running_compiled(), engine.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}

    def imported() -> tuple[str, str]:
        out = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        running, path = out.stdout.split()
        assert path.startswith(str(copy))  # the copy, not this checkout
        return running

    assert imported() == "True"
    with open(copy / "matcher" / "book.pxd", "a") as pxd:
        pxd.write("\n# edited\n")
    assert imported() == "False"
