"""Queue drivers. ``SQSQueueDriver`` is imported lazily so boto3 loads only when used."""

from __future__ import annotations

from .base import EnqueueResult, QueueDriver, ReceivedMessage
from .mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver

__all__ = [
    "DeadLetterEntry",
    "DrainResult",
    "EnqueueResult",
    "EnqueuedJob",
    "MockQueueDriver",
    "QueueDriver",
    "ReceivedMessage",
]
