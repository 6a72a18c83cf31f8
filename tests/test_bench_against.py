"""`exchange bench sustained --against COMMIT` runs that commit's services: its export
is the commit's tree, whatever the working tree holds."""

from __future__ import annotations

import shutil
import subprocess

from clients.bench import against
from clients.bench.cluster import ROOT


def test_export_is_the_commits_tree():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD~1"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    where, sha = against.export("HEAD~1", build=False)
    try:
        assert sha == head
        for path in ("services/matcher/engine.py", "clients/bench/sustained.py", "Makefile"):
            shown = subprocess.run(
                ["git", "show", f"{head}:{path}"], cwd=ROOT, capture_output=True, check=True
            ).stdout
            assert (where / path).read_bytes() == shown
        assert not list(where.glob("services/matcher/*.so"))  # not built when told not to
    finally:
        shutil.rmtree(where)
