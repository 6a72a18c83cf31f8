"""Stand-ins the service core tests share."""

from __future__ import annotations


class Log:
    """A structlog-like logger that keeps every line: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    @property
    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append((level, event, fields))
