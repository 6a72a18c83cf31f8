"""python -m services.journal --config PATH"""

import sys

from services.common.main import service_main
from services.journal.service import Journal

if __name__ == "__main__":
    sys.exit(service_main("journal", Journal))
