"""The disk reserve of a SQLite queue: space held in a file next to the database, which the
driver gives back when the disk fills, so workers can go on with the jobs already stored.

In WAL mode every write, even a claim or an ack, appends to the ``-wal`` file, and the WAL
starts over from its beginning only once a checkpoint has copied it into the database file.
On a full disk neither file can grow, and nothing can be committed. Deleting the reserve
frees enough room for that checkpoint; from then on writes reuse the WAL's own space.

The reserve covers a checkpoint only if the WAL does not hold more than that: the driver's
connections checkpoint every :meth:`DiskReserve.checkpoint_pages` pages, half the reserve.
(While checkpoints fail for room, the WAL can grow by about as much again.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from functools import cached_property
from pathlib import Path

logger = logging.getLogger("glasswork.jobs")

#: Bytes reserved next to a queue file by default.
DEFAULT_RESERVE = 4 * 1024 * 1024
#: The reserve never takes more than this share of its file system (1/16).
FILE_SYSTEM_SHARE = 16
#: Seconds between looks for room to put a released reserve back.
RESTORE_EVERY = 10.0
_CHUNK = 1024 * 1024


class DiskReserve:
    """``size`` bytes held in ``<database>-reserve`` (0: no reserve)."""

    def __init__(self, database: Path, limit: int) -> None:
        self.database = database
        self.path = database.with_name(database.name + "-reserve")
        self.limit = limit
        #: When to look for room to put the reserve back (monotonic); None: nothing to do.
        self._restore_at: float | None = None

    @cached_property
    def size(self) -> int:
        """``limit`` bytes, or a 16th of the file system when that is less, in whole 4 KiB
        blocks (read once the database's folder exists)."""
        limit = self.limit
        with contextlib.suppress(OSError):
            limit = min(limit, shutil.disk_usage(self.path.parent).total // FILE_SYSTEM_SHARE)
        return max(0, limit) // 4096 * 4096

    def checkpoint_pages(self, page_size: int) -> int | None:
        """``PRAGMA wal_autocheckpoint`` for this reserve (None: leave SQLite's default)."""
        return max(1, self.size // (2 * page_size)) if self.size else None

    def keep(self) -> bool:
        """Make the reserve if it is missing and the file system has room for it twice over
        (it must not be what fills the disk); True when it is in place."""
        if not self.size:
            return False
        if self.path.exists():
            self._restore_at = None
            return True
        try:
            room = shutil.disk_usage(self.path.parent).free >= 2 * self.size
            if room:
                self._allocate()
        except OSError:
            room = False
        self._restore_at = None if room else time.monotonic() + RESTORE_EVERY
        return room

    def release(self) -> bool:
        """Delete the reserve (the disk is full); True when this call freed it."""
        try:
            self.path.unlink()
        except OSError:  # gone already (another process released it), or not ours to delete
            return False
        self._restore_at = time.monotonic() + RESTORE_EVERY
        logger.warning(
            "the disk holding %s is full: released its %d KiB reserve (%s) so workers can go "
            "on with the jobs already stored; free space there (the reserve is put back once "
            "there is room for it)",
            self.database,
            self.size // 1024,
            self.path,
        )
        return True

    def tend(self) -> None:
        """Put a released reserve back once there is room (looks every
        :data:`RESTORE_EVERY` seconds at most; cheap to call after every write)."""
        due = self._restore_at is not None and time.monotonic() >= self._restore_at
        if due and self.keep():
            logger.info("the disk reserve %s is back in place", self.path)

    def _allocate(self) -> None:
        """Write the reserve under a temporary name, then rename it: another process never
        sees a partial reserve. Blocks are allocated, not left sparse."""
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            with partial.open("wb") as f:
                if sys.platform == "linux":
                    os.posix_fallocate(f.fileno(), 0, self.size)
                else:
                    for start in range(0, self.size, _CHUNK):
                        f.write(bytes(min(_CHUNK, self.size - start)))
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
