"""The SQLite driver: a durable queue in one file, shared safely by the processes of one
machine. :mod:`.driver` (the queue: enqueue, claim, settle), :mod:`.files` (opening the
file), :mod:`.reserve` (the disk reserve), :mod:`.dead_letters` (dead-letter search),
:mod:`.inspection` (outcome history, job lookup), :mod:`.workers` (heartbeats)."""

from __future__ import annotations

from .driver import SCHEMA_VERSION, SQLiteQueueDriver

__all__ = ["SCHEMA_VERSION", "SQLiteQueueDriver"]
