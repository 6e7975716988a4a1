"""The mock driver, for your tests: jobs kept in memory, run through the real worker path
by :meth:`MockQueueDriver.drain`."""

from __future__ import annotations

from .driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver

__all__ = ["DeadLetterEntry", "DrainResult", "EnqueuedJob", "MockQueueDriver"]
