"""python -m services.heartbeat --config PATH"""

import sys

from services.common.main import service_main
from services.heartbeat.service import Heartbeat

if __name__ == "__main__":
    sys.exit(service_main("heartbeat", Heartbeat))
