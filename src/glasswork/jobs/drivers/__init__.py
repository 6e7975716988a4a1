"""Queue drivers. ``SQSQueueDriver`` is imported lazily so boto3 loads only when used."""

from __future__ import annotations

from .base import (
    AsyncEnqueuer,
    DeadLetterRecord,
    EnqueueResult,
    QueueDriver,
    QueueStats,
    ReceivedMessage,
)
from .inspection import FoundJob, OutcomeCount
from .mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver

__all__ = [
    "AsyncEnqueuer",
    "DeadLetterEntry",
    "DeadLetterRecord",
    "DrainResult",
    "EnqueueResult",
    "EnqueuedJob",
    "FoundJob",
    "MockQueueDriver",
    "OutcomeCount",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
]
