"""Queue drivers. ``SQSQueueDriver`` is imported lazily so boto3 loads only when used."""

from __future__ import annotations

from .contract import QueueDriver
from .mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver
from .records import EnqueueResult, ReceivedMessage

__all__ = [
    "DeadLetterEntry",
    "DrainResult",
    "EnqueueResult",
    "EnqueuedJob",
    "MockQueueDriver",
    "QueueDriver",
    "ReceivedMessage",
]
