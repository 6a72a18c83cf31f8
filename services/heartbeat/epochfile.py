"""The highest epoch the heartbeat service ever promoted, on disk.

A Promote may reach a matcher that never reports back (it stalls, it dies), so the
beats alone cannot tell a restarted heartbeat service which epochs were handed out.
Each epoch is written here, synced and renamed into place, before any Promote carries
it; on start the service promotes above ``max(this, every epoch it hears)``.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class EpochFileError(RuntimeError):
    pass


class EpochFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int:
        """The stored epoch, 0 if none. A file that does not read as one is an error:
        starting from 0 instead could hand out an epoch twice."""
        for stale in self.path.parent.glob(f"{self.path.name}.*.tmp"):  # a save cut short
            stale.unlink(missing_ok=True)
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        try:
            epoch = int(text.strip())
        except ValueError:
            epoch = -1
        if epoch < 0:
            raise EpochFileError(
                f"{self.path} does not hold an epoch ({text[:40]!r}): it records the "
                f"highest epoch ever promoted; put that number in it, or remove it if "
                f"every matcher and the journal are running (their beats carry the epoch)"
            )
        return epoch

    def save(self, epoch: int) -> None:
        """Store ``epoch`` durably: temp file, fsync, rename, directory fsync."""
        directory = self.path.parent
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if directory.stat().st_mode & 0o077:
            os.chmod(directory, DIR_MODE)
        tmp = directory / f"{self.path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, f"{epoch}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
