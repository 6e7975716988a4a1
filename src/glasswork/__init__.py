"""Glasswork: background jobs for Python services on AWS.

What an application writes, from one place: the module system (:func:`define_module`,
:class:`Module`, :func:`provide`) and the application tier of :mod:`glasswork.jobs` (jobs,
services, workers, drivers, options, errors; its docstring lists them), so
``from glasswork import define_job, JobService`` works as well as
``from glasswork.jobs import ...``. Names whose modules need optional packages
(``SQSQueueDriver`` needs boto3) load on first use.

Everything else lives in named submodules (see :mod:`glasswork.jobs`); ``Services`` and
``Provider``, the services container and a provider's type, live in :mod:`glasswork.services`.
Names this package exported before it had tiers still import from here, with a
``DeprecationWarning`` naming their new place (the errors without one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import jobs
from .jobs import (
    ConfigurationError,
    DuplicateJobError,
    EnqueueError,
    EnqueueResult,
    GlassworkError,
    Idempotency,
    InvalidJobPayloadError,
    JobContext,
    JobDefinition,
    JobMessage,
    JobTimeoutError,
    PayloadTooLargeError,
    PermanentJobError,
    QueueDriver,
    RetryPolicy,
    TransientJobError,
    bootstrap_worker,
    define_job,
    define_periodic_job,
    set_tracing,
)
from .jobs.extras import load_moved
from .modules import Module, define_module
from .services import provide

if TYPE_CHECKING:
    from .jobs import (
        AsyncJobService,
        EMFMetrics,
        JobService,
        MockQueueDriver,
        PostgresQueueDriver,
        PrometheusMetrics,
        SQLiteQueueDriver,
        SQSQueueDriver,
        Worker,
        create_scheduler_handler,
        driver_from_url,
        run_scheduler,
    )

__version__ = "0.1.0"

# Names exported here before the API had tiers: those glasswork.jobs exported, and these.
MOVED_NAMES = {
    **jobs.MOVED_NAMES,
    "Services": f"{__name__}.services",
    "Provider": f"{__name__}.services",
}


def __getattr__(name: str) -> Any:
    if name in jobs.__all__:
        value = getattr(jobs, name)  # a lazily loaded name (boto3, croniter, ...)
        globals()[name] = value
        return value
    return load_moved(__name__, {**MOVED_NAMES, **jobs.ERRORS_HERE}, name, jobs.QUIET_NAMES)


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})


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
    "Module",
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
    "define_module",
    "define_periodic_job",
    "driver_from_url",
    "provide",
    "run_scheduler",
    "set_tracing",
]
