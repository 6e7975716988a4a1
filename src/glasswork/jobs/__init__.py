"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .async_service import AsyncJobService
from .aws_lambda.handler import LambdaWorker, bootstrap_worker
from .context import JobContext, JobLogger
from .definition import JobDefinition, RetryPolicy, define_job, define_periodic_job
from .drivers.contract import (
    AsyncEnqueuer,
    DeadLetterRecord,
    EnqueueResult,
    QueueDriver,
    QueueStats,
    ReceivedMessage,
)
from .drivers.mock.driver import DeadLetterEntry, DrainResult, EnqueuedJob, MockQueueDriver
from .drivers.records import FoundJob, OutcomeCount
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
from .extras import MovedModules, load_lazily
from .idempotency import Idempotency, IdempotencyStore, MemoryIdempotencyStore
from .idempotency.step import Duplicate
from .message import MAX_MESSAGE_BYTES, JobMessage
from .metrics import EMFMetrics, JobMetrics, MetricsSink
from .service import JobService
from .telemetry import Tracing, set_tracing
from .timeouts import JobTimeout

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .drivers.postgres import PostgresQueueDriver
    from .drivers.sqlite.driver import SQLiteQueueDriver
    from .drivers.sqs.driver import SQSQueueDriver
    from .drivers.sqs.scheduler import create_scheduler_handler, run_scheduler
    from .idempotency.dynamodb import DynamoDBIdempotencyStore, create_idempotency_table
    from .idempotency.sqlite import SQLiteIdempotencyStore
    from .metrics.outcome_log import OutcomeLog
    from .metrics.prometheus import PrometheusMetrics
    from .worker import Worker

# Names whose modules import boto3 or other optional packages: loaded on first use.
_LAZY = {
    "SQSQueueDriver": ".drivers.sqs",
    "create_scheduler_handler": ".drivers.sqs.scheduler",
    "run_scheduler": ".drivers.sqs.scheduler",
    "SQLiteQueueDriver": ".drivers.sqlite",
    "OutcomeLog": ".metrics.outcome_log",
    "PostgresQueueDriver": ".drivers.postgres",
    "Worker": ".worker",
    "SQLiteIdempotencyStore": ".idempotency.sqlite",
    "DynamoDBIdempotencyStore": ".idempotency.dynamodb",
    "create_idempotency_table": ".idempotency.dynamodb",
    "PrometheusMetrics": ".metrics.prometheus",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)


# Module paths of earlier releases, still importable (with a DeprecationWarning).
MovedModules.register(
    {
        f"{__name__}.{old}": f"{__name__}.{new}"
        for old, new in {
            "lambda_handler": "aws_lambda.handler",
            "lambda_batch": "aws_lambda.batch",
            "lambda_settle": "aws_lambda.settle",
            "lambda_sqs": "aws_lambda.source_queues",
            "lambda_checks": "aws_lambda.checks",
            "scheduler": "drivers.sqs.scheduler",
            "drivers.sqs_async": "drivers.sqs.async_enqueuer",
            "drivers.sqs_consuming": "drivers.sqs.consuming",
            "drivers.sqs_dead_letters": "drivers.sqs.dead_letters",
            "drivers.sqs_fifo": "drivers.sqs.fifo",
            "drivers.sqs_lookup": "drivers.sqs.lookup",
            "drivers.sqs_problems": "drivers.sqs.problems",
            "drivers.sqs_sending": "drivers.sqs.sending",
            "drivers.sqs_unique": "drivers.sqs.unique",
            "drivers.sqlite_files": "drivers.sqlite.files",
            "drivers.sqlite_inspection": "drivers.sqlite.inspection",
            "drivers.sqlite_reserve": "drivers.sqlite.reserve",
            "drivers.sqlite_dead_letters": "drivers.sqlite.dead_letters",
            "drivers.sqlite_workers": "drivers.sqlite.workers",
            "outcome_log": "metrics.outcome_log",
            "aws_errors": "aws.errors",
            "dynamodb_tables": "aws.tables",
            "inspection": "drivers.contract",
            "heartbeats": "drivers.contract",
            "dead_letter_query": "drivers.dead_letter_search",
            "drivers.base": "drivers.contract",
            "drivers.inspection": "drivers.contract",
            "drivers.heartbeats": "drivers.contract",
            "drivers.dead_letter_query": "drivers.dead_letter_search",
            "drivers.dead_letter_sql": "drivers.dead_letter_search",
            "tracebacks": "errors",
            "loops": "execution",
            "scoped_keys": "message",
            "_lazy": "extras",
        }.items()
    }
)


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
