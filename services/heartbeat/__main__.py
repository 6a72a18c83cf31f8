"""python -m services.heartbeat --config PATH"""

import argparse
import sys

from services.common import config, logs
from services.heartbeat.service import Heartbeat


def main() -> int:
    parser = argparse.ArgumentParser(prog="services.heartbeat")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    return Heartbeat(config.load(args.config), logs.setup("heartbeat")).run()


if __name__ == "__main__":
    sys.exit(main())
