"""Glasswork jobs: typed background jobs for Python services on AWS.

>>> from glasswork.jobs import define_job, JobService, MockQueueDriver   # doctest: +SKIP

This package exports what an application writes (``__all__``, also exported by
``glasswork``):

* jobs: :func:`define_job`, :func:`define_periodic_job`, :class:`JobContext` (a handler's
  second argument), :class:`JobDefinition` (what ``define_job`` returns), :class:`RetryPolicy`;
* enqueueing: :class:`JobService`, :class:`AsyncJobService`, :class:`JobMessage` (the wire
  envelope), :class:`EnqueueResult`;
* workers: :func:`bootstrap_worker` (the Lambda handler), :class:`Worker` (long-running);
* drivers: :class:`MockQueueDriver`, :class:`SQLiteQueueDriver`, :class:`PostgresQueueDriver`,
  :class:`SQSQueueDriver`, :func:`driver_from_url`, and :class:`QueueDriver` to write your own;
  the SQS driver's long-delay scheduler: :func:`create_scheduler_handler`, :func:`run_scheduler`;
* options: :class:`Idempotency`, :class:`EMFMetrics`, :class:`PrometheusMetrics`,
  :func:`set_tracing`;
* the errors a handler raises or its caller catches: :class:`GlassworkError` (the root of
  all), :class:`ConfigurationError`, :class:`TransientJobError`, :class:`PermanentJobError`,
  :class:`JobTimeoutError`, :class:`InvalidJobPayloadError`, :class:`EnqueueError`,
  :class:`PayloadTooLargeError`, :class:`DuplicateJobError`.

Everything else lives in a named submodule, for the code that needs it:

* :mod:`glasswork.jobs.errors`: every error, those a worker raises included
  (:class:`~glasswork.jobs.errors.UnknownJobError`, ``BatchRetryError``, ...), and those of
  following a job (``JobFailedError``, ``JobNotFoundError``, ``StatusUnavailableError``,
  ``PriorityUnsupportedError``, ``JobCancelledError``); each is also importable from here;
* :mod:`glasswork.jobs.following`: what ``enqueue`` returns, ``JobHandle`` (and
  ``AsyncJobHandle``), to follow a job: ``status()``, ``wait()``, ``cancel()``;
* :mod:`glasswork.jobs.workflows`: ``chain``, ``group`` (``.then(callback)``),
  ``MemberFailure``, and what ``enqueue_workflow`` returns, ``WorkflowHandle``;
* :mod:`glasswork.jobs.testing`: Lambda events and context for tests (``sqs_event``,
  ``FakeLambdaContext``, ...);
* :mod:`glasswork.jobs.idempotency`: the stores (``DynamoDBIdempotencyStore``, ...);
* :mod:`glasswork.jobs.metrics`: ``MetricsSink`` for sinks of your own, and the others;
* :mod:`glasswork.jobs.execution`: what runs a job (``Executor``, ``JobRun``, ``RunStep``
  for steps of your own, ``JobHooks``, ``JobRegistry``, the outcomes ``Done``, ``Retry``,
  ``DeadLetter``, ``Discard``);
* :mod:`glasswork.jobs.drivers`: for driver authors (``ReceivedMessage``, ``QueueStats``,
  ``DeadLetterRecord``, ...), and the mock driver's records (``DrainResult``, ...);
* :mod:`glasswork.jobs.telemetry` (``Tracing``), :mod:`glasswork.jobs.timeouts`
  (``JobTimeout``), :mod:`glasswork.jobs.context` (``JobLogger``, ``ctx.logger``'s type),
  :mod:`glasswork.jobs.durations` (``parse_duration``), :mod:`glasswork.jobs.message`
  (``MAX_MESSAGE_BYTES``), :mod:`glasswork.jobs.aws_lambda` and :mod:`glasswork.jobs.worker`
  (the two runtimes).

Names this package exported before it had tiers still import from here, with a
``DeprecationWarning`` naming their new place (the errors without one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .aws_lambda.handler import bootstrap_worker
from .context import JobContext
from .definition import JobDefinition, RetryPolicy, define_job, define_periodic_job
from .drivers.contract import EnqueueResult, QueueDriver
from .errors import (
    ConfigurationError,
    DuplicateJobError,
    EnqueueError,
    GlassworkError,
    InvalidJobPayloadError,
    JobTimeoutError,
    PayloadTooLargeError,
    PermanentJobError,
    TransientJobError,
)
from .extras import MovedModules, load_lazily, load_moved
from .idempotency import Idempotency
from .message import JobMessage
from .telemetry import set_tracing

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .async_service import AsyncJobService
    from .drivers.mock.driver import MockQueueDriver
    from .drivers.postgres import PostgresQueueDriver
    from .drivers.sqlite.driver import SQLiteQueueDriver
    from .drivers.sqs.driver import SQSQueueDriver
    from .drivers.sqs.scheduler import create_scheduler_handler, run_scheduler
    from .drivers.urls import driver_from_url
    from .metrics.emf import EMFMetrics
    from .metrics.prometheus import PrometheusMetrics
    from .service import JobService
    from .worker import Worker

# Names whose modules import boto3 or other optional packages, and those a Lambda worker
# does not need (so that its cold start does not pay for them): loaded on first use.
_LAZY = {
    "AsyncJobService": ".async_service",
    "JobService": ".service",
    "MockQueueDriver": ".drivers.mock.driver",
    "driver_from_url": ".drivers.urls",
    "EMFMetrics": ".metrics.emf",
    "SQSQueueDriver": ".drivers.sqs",
    "create_scheduler_handler": ".drivers.sqs.scheduler",
    "run_scheduler": ".drivers.sqs.scheduler",
    "SQLiteQueueDriver": ".drivers.sqlite",
    "PostgresQueueDriver": ".drivers.postgres",
    "Worker": ".worker",
    "PrometheusMetrics": ".metrics.prometheus",
}

# Names exported here before the API had tiers, and where they live now. They still import
# from here (never kept on the package, so every old import is seen), with a
# DeprecationWarning naming the new place; `glasswork` forwards the same names.
MOVED_NAMES = {
    # For steps, hooks and runtimes of your own: what runs a job and what it decides.
    **dict.fromkeys(
        [
            "Executor",
            "JobRun",
            "RunStep",
            "JobHooks",
            "JobRegistry",
            "Outcome",
            "Done",
            "Retry",
            "DeadLetter",
            "Discard",
        ],
        f"{__name__}.execution",
    ),
    # For driver authors, and the mock driver's records.
    **dict.fromkeys(
        [
            "ReceivedMessage",
            "AsyncEnqueuer",
            "QueueStats",
            "DeadLetterRecord",
            "FoundJob",
            "OutcomeCount",
            "DeadLetterEntry",
            "DrainResult",
            "EnqueuedJob",
        ],
        f"{__name__}.drivers",
    ),
    **dict.fromkeys(
        [
            "IdempotencyStore",
            "MemoryIdempotencyStore",
            "SQLiteIdempotencyStore",
            "DynamoDBIdempotencyStore",
            "create_idempotency_table",
            "Duplicate",
        ],
        f"{__name__}.idempotency",
    ),
    **dict.fromkeys(["MetricsSink", "JobMetrics", "OutcomeLog"], f"{__name__}.metrics"),
    "Tracing": f"{__name__}.telemetry",
    "JobTimeout": f"{__name__}.timeouts",
    "JobLogger": f"{__name__}.context",
    "MAX_MESSAGE_BYTES": f"{__name__}.message",
    "parse_duration": f"{__name__}.durations",
    "LambdaWorker": f"{__name__}.aws_lambda.handler",
    # Errors a worker raises rather than an application: documented as importable from here
    # too, so that an `except` written against this package never has to change (QUIET_NAMES).
    **dict.fromkeys(
        [
            "JobError",
            "UnknownJobError",
            "MalformedMessageError",
            "JobInProgressError",
            "BatchRetryError",
            "DeadLetterUnavailableError",
        ],
        f"{__name__}.errors",
    ),
}
# Errors added since the tiers, which an application catches (waiting for a job, asking a
# driver for what it cannot do): they live in errors, and import from here and from
# `glasswork` too, without a warning, like the errors above.
ERRORS_HERE = dict.fromkeys(
    [
        "JobFailedError",
        "JobNotFoundError",
        "StatusUnavailableError",
        "PriorityUnsupportedError",
        "JobCancelledError",
    ],
    f"{__name__}.errors",
)
QUIET_NAMES = frozenset(
    [*(n for n, place in MOVED_NAMES.items() if place == f"{__name__}.errors"), *ERRORS_HERE]
)
_FORWARDED = {**MOVED_NAMES, **ERRORS_HERE}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return load_lazily(__name__, _LAZY, name)
    return load_moved(__name__, _FORWARDED, name, QUIET_NAMES)


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


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
    "AsyncJobService",
    "ConfigurationError",
    "DuplicateJobError",
    "EMFMetrics",
    "EnqueueError",
    "EnqueueResult",
    "GlassworkError",
    "Idempotency",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobMessage",
    "JobService",
    "JobTimeoutError",
    "MockQueueDriver",
    "PayloadTooLargeError",
    "PermanentJobError",
    "PostgresQueueDriver",
    "PrometheusMetrics",
    "QueueDriver",
    "RetryPolicy",
    "SQLiteQueueDriver",
    "SQSQueueDriver",
    "TransientJobError",
    "Worker",
    "bootstrap_worker",
    "create_scheduler_handler",
    "define_job",
    "define_periodic_job",
    "driver_from_url",
    "run_scheduler",
    "set_tracing",
]
