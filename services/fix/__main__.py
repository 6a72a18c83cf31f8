"""python -m services.fix --config PATH"""

import sys

from services.common.main import service_main
from services.fix.service import FixService

if __name__ == "__main__":
    sys.exit(service_main("fix", FixService))
