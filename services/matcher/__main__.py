"""python -m services.matcher --config PATH --instance a|b"""

import sys

from services.common.main import service_main
from services.matcher.service import Matcher

if __name__ == "__main__":
    sys.exit(service_main("matcher", Matcher, instance=True))
