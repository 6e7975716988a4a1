"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._lazy import load_lazily
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
from .drivers.urls import driver_from_url
from .durations import parse_duration
from .errors import (
    BatchRetryError,
    ConfigurationError,
    DeadLetterUnavailableError,
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
    JobHooks,
    JobRegistry,
    JobRun,
    Outcome,
    Retry,
    RunStep,
)
from .idempotency import Idempotency, IdempotencyStore, MemoryIdempotencyStore
from .idempotency.step import Duplicate
from .inspection import FoundJob, OutcomeCount
from .lambda_handler import LambdaWorker, bootstrap_worker
from .message import MAX_MESSAGE_BYTES, JobMessage
from .metrics import EMFMetrics, JobMetrics, MetricsSink
from .service import JobService
from .telemetry import Tracing, set_tracing
from .timeouts import JobTimeout

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .drivers.postgres import PostgresQueueDriver
    from .drivers.sqlite import SQLiteQueueDriver
    from .drivers.sqs import SQSQueueDriver
    from .idempotency.dynamodb import DynamoDBIdempotencyStore, create_idempotency_table
    from .idempotency.sqlite import SQLiteIdempotencyStore
    from .metrics.prometheus import PrometheusMetrics
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
    "PostgresQueueDriver": ".drivers.postgres",
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
    "AsyncEnqueuer",
    "AsyncJobService",
    "BatchRetryError",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterRecord",
    "DeadLetterUnavailableError",
    "Discard",
    "Done",
    "DrainResult",
    "Duplicate",
    "DuplicateJobError",
    "DynamoDBIdempotencyStore",
    "EMFMetrics",
    "EnqueueError",
    "EnqueueResult",
    "EnqueuedJob",
    "Executor",
    "FoundJob",
    "GlassworkError",
    "Idempotency",
    "IdempotencyStore",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobHooks",
    "JobInProgressError",
    "JobLogger",
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
    "OutcomeCount",
    "OutcomeLog",
    "PayloadTooLargeError",
    "PermanentJobError",
    "PostgresQueueDriver",
    "PrometheusMetrics",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "SQLiteIdempotencyStore",
    "SQLiteQueueDriver",
    "SQSQueueDriver",
    "Tracing",
    "TransientJobError",
    "UnknownJobError",
    "Worker",
    "bootstrap_worker",
    "create_idempotency_table",
    "create_scheduler_handler",
    "define_job",
    "define_periodic_job",
    "driver_from_url",
    "parse_duration",
    "run_scheduler",
    "set_tracing",
]
