"""The SQLite driver: a durable queue in one file, shared safely by the processes of one
machine. :mod:`.driver` (the driver: its settings and parts), :mod:`.schema` (the tables and
their versions), :mod:`.connections` (the file: connections, write transactions),
:mod:`.files` (how a Glasswork SQLite file is opened), :mod:`.reserve` (the disk reserve),
:mod:`.producing` (storing jobs), :mod:`.claims` (claiming them), :mod:`.settling` (acks,
releases, leases), :mod:`.dead_letters` (dead letters and their search), :mod:`.inspection`
(counts, job lookup), :mod:`.outcomes` (outcome history), :mod:`.workers` (heartbeats),
:mod:`.status` and :mod:`.results` (a job's life: status, results, cancellation, progress)."""

from __future__ import annotations

from .driver import SCHEMA_VERSION, SQLiteQueueDriver

__all__ = ["SCHEMA_VERSION", "SQLiteQueueDriver"]
