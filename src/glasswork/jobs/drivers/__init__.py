"""Queue drivers. ``SQSQueueDriver`` is imported lazily so boto3 loads only when used."""

from __future__ import annotations

from .contract import AsyncEnqueuer, QueueDriver
from .mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver
from .records import (
    DeadLetterRecord,
    EnqueueResult,
    FoundJob,
    JobStatus,
    OutcomeCount,
    QueueStats,
    ReceivedMessage,
)

__all__ = [
    "AsyncEnqueuer",
    "DeadLetterEntry",
    "DeadLetterRecord",
    "DrainResult",
    "EnqueueResult",
    "EnqueuedJob",
    "FoundJob",
    "JobStatus",
    "MockQueueDriver",
    "OutcomeCount",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
]
