"""python -m services.statements --config PATH"""

import sys

from services.common.main import service_main
from services.statements.service import StatementsService

if __name__ == "__main__":
    sys.exit(service_main("statements", StatementsService))
