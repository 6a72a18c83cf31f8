"""python -m services.journal --config PATH"""

import argparse
import sys

from services.common import config, logs
from services.journal.service import Journal


def main() -> int:
    parser = argparse.ArgumentParser(prog="services.journal")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()
    return Journal(config.load(args.config), logs.setup("journal")).run()


if __name__ == "__main__":
    sys.exit(main())
