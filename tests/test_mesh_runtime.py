"""Process settings the services make for themselves once they run."""

from __future__ import annotations

import os
import sys

import pytest

from tests.mesh import Mesh

IO_THREAD = "ZMQbg/IO/"  # the name libzmq gives its I/O threads


def io_thread_policies(pid: int) -> list[int]:
    policies = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as comm:
            if comm.read().startswith(IO_THREAD):
                policies.append(os.sched_getscheduler(int(tid)))
    return policies


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
def test_every_service_runs_its_zeromq_io_threads_as_batch(short_home):
    mesh = Mesh(short_home)
    try:
        mesh.start()
        for name in Mesh.ORDER:
            policies = io_thread_policies(mesh[name].pid)
            assert policies and set(policies) == {os.SCHED_BATCH}, (name, policies)
    finally:
        mesh.stop()
