"""python -m services.marketdata --config PATH"""

import sys

from services.common.main import service_main
from services.marketdata.service import MarketDataService

if __name__ == "__main__":
    sys.exit(service_main("marketdata", MarketDataService))
