"""python -m services.marketdata --config PATH"""

import argparse
import sys

from services.common import config, logs
from services.marketdata.service import MarketDataService


def main() -> int:
    parser = argparse.ArgumentParser(prog="services.marketdata")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    return MarketDataService(config.load(args.config), logs.setup("marketdata")).run()


if __name__ == "__main__":
    sys.exit(main())
