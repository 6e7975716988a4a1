"""Glasswork: background jobs for Python services on AWS.

The jobs API is re-exported here, so ``from glasswork import define_job, JobService`` works
as well as ``from glasswork.jobs import ...``; the module system (``define_module``) lives
here too. Names whose modules need optional packages (``SQSQueueDriver`` needs boto3) load
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import jobs
from .jobs import (
    MAX_MESSAGE_BYTES,
    AsyncEnqueuer,
    AsyncJobService,
    ConfigurationError,
    DeadLetter,
    DeadLetterEntry,
    DeadLetterRecord,
    Discard,
    Done,
    DrainResult,
    Duplicate,
    DuplicateJobError,
    EMFMetrics,
    EnqueuedJob,
    EnqueueError,
    EnqueueResult,
    Executor,
    FoundJob,
    GlassworkError,
    Idempotency,
    IdempotencyStore,
    InvalidJobPayloadError,
    JobContext,
    JobDefinition,
    JobError,
    JobHooks,
    JobInProgressError,
    JobLogger,
    JobMessage,
    JobMetrics,
    JobRegistry,
    JobRun,
    JobService,
    JobTimeout,
    JobTimeoutError,
    LambdaWorker,
    MalformedMessageError,
    MemoryIdempotencyStore,
    MetricsSink,
    MockQueueDriver,
    Outcome,
    OutcomeCount,
    PayloadTooLargeError,
    PermanentJobError,
    QueueDriver,
    QueueStats,
    ReceivedMessage,
    Retry,
    RetryPolicy,
    RunStep,
    Tracing,
    TransientJobError,
    UnknownJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
    parse_duration,
    set_tracing,
)
from .modules import Module, define_module
from .services import Provider, Services, provide

if TYPE_CHECKING:
    from .jobs import (
        DynamoDBIdempotencyStore,
        OutcomeLog,
        PrometheusMetrics,
        SQLiteIdempotencyStore,
        SQLiteQueueDriver,
        SQSQueueDriver,
        Worker,
        create_idempotency_table,
        create_scheduler_handler,
        run_scheduler,
    )

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in jobs.__all__:
        value = getattr(jobs, name)  # a lazily loaded name (boto3, croniter, ...)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'glasswork' has no attribute {name!r}")


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
    "Module",
    "Outcome",
    "OutcomeCount",
    "OutcomeLog",
    "PayloadTooLargeError",
    "PermanentJobError",
    "PrometheusMetrics",
    "Provider",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "SQLiteIdempotencyStore",
    "SQLiteQueueDriver",
    "SQSQueueDriver",
    "Services",
    "Tracing",
    "TransientJobError",
    "UnknownJobError",
    "Worker",
    "bootstrap_worker",
    "create_idempotency_table",
    "create_scheduler_handler",
    "define_job",
    "define_module",
    "define_periodic_job",
    "parse_duration",
    "provide",
    "run_scheduler",
    "set_tracing",
]
