"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .async_service import AsyncJobService
from .context import JobContext, JobLogger
from .definition import JobDefinition, RetryPolicy, define_job, define_periodic_job
from .drivers.base import (
    AsyncEnqueuer,
    DeadLetterRecord,
    EnqueueResult,
    QueueDriver,
    QueueStats,
    ReceivedMessage,
)
from .drivers.mock import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver
from .durations import parse_duration
from .errors import (
    ConfigurationError,
    DuplicateJobError,
    EnqueueError,
    GlassworkError,
    InvalidJobPayloadError,
    JobError,
    JobTimeoutError,
    MalformedMessageError,
    PayloadTooLargeError,
    PermanentJobError,
    TransientJobError,
    UnknownJobError,
)
from .execution import (
    DeadLetter,
    Discard,
    Done,
    Executor,
    JobHooks,
    JobRegistry,
    JobRun,
    Outcome,
    Retry,
    RunStep,
)
from .inspection import FoundJob, OutcomeCount
from .lambda_handler import LambdaWorker, bootstrap_worker
from .message import MAX_MESSAGE_BYTES, JobMessage
from .service import JobService
from .timeouts import JobTimeout

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .drivers.sqlite import SQLiteQueueDriver
    from .drivers.sqs import SQSQueueDriver
    from .outcome_log import OutcomeLog
    from .scheduler import create_scheduler_handler, run_scheduler
    from .worker import Worker

# Names whose modules import boto3 or other optional packages: loaded on first use.
_LAZY = {
    "SQSQueueDriver": ".drivers.sqs",
    "create_scheduler_handler": ".scheduler",
    "run_scheduler": ".scheduler",
    "SQLiteQueueDriver": ".drivers.sqlite",
    "OutcomeLog": ".outcome_log",
    "Worker": ".worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'glasswork.jobs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_MESSAGE_BYTES",
    "AsyncEnqueuer",
    "AsyncJobService",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterRecord",
    "Discard",
    "Done",
    "DrainResult",
    "DuplicateJobError",
    "EnqueueError",
    "EnqueueResult",
    "EnqueuedJob",
    "Executor",
    "FoundJob",
    "GlassworkError",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobHooks",
    "JobLogger",
    "JobMessage",
    "JobRegistry",
    "JobRun",
    "JobService",
    "JobTimeout",
    "JobTimeoutError",
    "LambdaWorker",
    "MalformedMessageError",
    "MockQueueDriver",
    "Outcome",
    "OutcomeCount",
    "OutcomeLog",
    "PayloadTooLargeError",
    "PermanentJobError",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "SQLiteQueueDriver",
    "SQSQueueDriver",
    "TransientJobError",
    "UnknownJobError",
    "Worker",
    "bootstrap_worker",
    "create_scheduler_handler",
    "define_job",
    "define_periodic_job",
    "parse_duration",
    "run_scheduler",
]
