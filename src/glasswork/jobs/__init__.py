"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .definition import JobDefinition, RetryPolicy, define_job, define_periodic_job
from .drivers.base import EnqueueResult, QueueDriver, ReceivedMessage
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
    JobContext,
    JobHooks,
    JobRegistry,
    JobRun,
    Outcome,
    Retry,
    RunStep,
)
from .lambda_handler import LambdaWorker, bootstrap_worker
from .message import MAX_MESSAGE_BYTES, JobMessage
from .service import JobService
from .timeouts import JobTimeout

# Names whose modules import boto3 or other optional packages: loaded on first use.
_LAZY = {
    "SQSQueueDriver": ".drivers.sqs",
    "create_scheduler_handler": ".scheduler",
    "run_scheduler": ".scheduler",
    "SQLiteQueueDriver": ".drivers.sqlite",
    "PostgresQueueDriver": ".drivers.postgres",
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
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterEntry",
    "Discard",
    "Done",
    "DrainResult",
    "DuplicateJobError",
    "EnqueueError",
    "EnqueueResult",
    "EnqueuedJob",
    "Executor",
    "GlassworkError",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobHooks",
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
    "PayloadTooLargeError",
    "PermanentJobError",
    "QueueDriver",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "TransientJobError",
    "UnknownJobError",
    "bootstrap_worker",
    "define_job",
    "define_periodic_job",
    "parse_duration",
]
