"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ._lazy import load_lazily
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
    JobInProgressError,
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
from .idempotency import Idempotency, IdempotencyStore, MemoryIdempotencyStore
from .idempotency.step import Duplicate
from .lambda_handler import LambdaWorker, bootstrap_worker
from .message import MAX_MESSAGE_BYTES, JobMessage
from .metrics import EMFMetrics, JobMetrics, MetricsSink
from .service import JobService
from .telemetry import Tracing, set_tracing
from .timeouts import JobTimeout

# Names whose modules import boto3 or other optional packages: loaded on first use.
_LAZY = {
    "SQSQueueDriver": ".drivers.sqs",
    "create_scheduler_handler": ".scheduler",
    "run_scheduler": ".scheduler",
    "SQLiteQueueDriver": ".drivers.sqlite",
    "Worker": ".worker",
    "SQLiteIdempotencyStore": ".idempotency.sqlite",
    "DynamoDBIdempotencyStore": ".idempotency.dynamodb",
    "create_idempotency_table": ".idempotency.dynamodb",
    "PrometheusMetrics": ".metrics.prometheus",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)


__all__ = [
    "MAX_MESSAGE_BYTES",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterEntry",
    "Discard",
    "Done",
    "DrainResult",
    "Duplicate",
    "DuplicateJobError",
    "EMFMetrics",
    "EnqueueError",
    "EnqueueResult",
    "EnqueuedJob",
    "Executor",
    "GlassworkError",
    "Idempotency",
    "IdempotencyStore",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobHooks",
    "JobInProgressError",
    "JobMessage",
    "JobMetrics",
    "JobRegistry",
    "JobRun",
    "JobService",
    "JobTimeout",
    "JobTimeoutError",
    "LambdaWorker",
    "MalformedMessageError",
    "MemoryIdempotencyStore",
    "MetricsSink",
    "MockQueueDriver",
    "Outcome",
    "PayloadTooLargeError",
    "PermanentJobError",
    "QueueDriver",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "Tracing",
    "TransientJobError",
    "UnknownJobError",
    "bootstrap_worker",
    "define_job",
    "define_periodic_job",
    "parse_duration",
    "set_tracing",
]
