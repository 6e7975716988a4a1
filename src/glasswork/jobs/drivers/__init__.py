"""Queue drivers. ``SQSQueueDriver`` is imported lazily so boto3 loads only when used; the
mock driver and the records drivers report (:mod:`.reports`) load on first use too (a Lambda
worker does not need them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..extras import load_lazily
from .contract import AsyncEnqueuer, QueueDriver
from .records import EnqueueResult, JobStatus, ReceivedMessage

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver
    from .reports import DeadLetterRecord, FoundJob, OutcomeCount, QueueStats

_LAZY = {
    **dict.fromkeys(
        ["DeadLetterEntry", "DrainResult", "EnqueuedJob", "MockQueueDriver"], ".mock.driver"
    ),
    **dict.fromkeys(["DeadLetterRecord", "FoundJob", "OutcomeCount", "QueueStats"], ".reports"),
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)


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
