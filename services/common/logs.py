"""One structlog set-up for every service: JSON lines with bound context."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def setup(service: str, stream: TextIO | None = None, level: int = logging.INFO):
    """Log JSON lines to ``stream`` (stderr by default; supervisord files it under
    $EXCHANGE_HOME/log/) and return a logger bound to the service's name."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(service=service)
