"""python -m services.gateway --config PATH"""

import argparse
import sys

from services.common import config, logs
from services.gateway.service import Gateway


def main() -> int:
    parser = argparse.ArgumentParser(prog="services.gateway")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    return Gateway(config.load(args.config), logs.setup("gateway")).run()


if __name__ == "__main__":
    sys.exit(main())
