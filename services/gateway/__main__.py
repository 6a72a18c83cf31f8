"""python -m services.gateway --config PATH"""

import sys

from services.common.main import service_main
from services.gateway.service import Gateway

if __name__ == "__main__":
    sys.exit(service_main("gateway", Gateway))
