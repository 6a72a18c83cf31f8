import shutil
import tempfile
from pathlib import Path

import pytest

from services.common import config
from tests.mesh import running


@pytest.fixture
def cfg(tmp_path):
    """The default config, with EXCHANGE_HOME in this test's temp dir."""
    return config.load(home=tmp_path)


@pytest.fixture
def short_home():
    """A short temp dir: ipc:// paths must stay under ~100 characters."""
    home = Path(tempfile.mkdtemp(prefix="ex-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def mesh(short_home):
    """The whole exchange running as real processes; stopped by PID afterwards."""
    with running(short_home) as m:
        yield m
