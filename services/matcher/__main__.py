"""python -m services.matcher --config PATH --instance a|b"""

import argparse
import sys

from services.common import config, logs
from services.matcher.service import Matcher


def main() -> int:
    parser = argparse.ArgumentParser(prog="services.matcher")
    parser.add_argument("--config", default=None)
    parser.add_argument("--instance", default="a", help="which matcher of the pair (a or b)")
    args = parser.parse_args()
    cfg = config.load(args.config)
    log = logs.setup("matcher")
    return Matcher(cfg, args.instance, log).run()


if __name__ == "__main__":
    sys.exit(main())
