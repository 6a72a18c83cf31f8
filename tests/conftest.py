import pytest

from services.common import config


@pytest.fixture
def cfg(tmp_path):
    """The default config, with EXCHANGE_HOME in this test's temp dir."""
    return config.load(home=tmp_path)
