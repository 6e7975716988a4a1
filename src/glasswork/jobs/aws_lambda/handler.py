"""bootstrap_worker: the AWS Lambda handler for SQS batches and EventBridge events.

The pieces: :mod:`~glasswork.jobs.aws_lambda.records` reads each SQS record into a
:class:`~glasswork.jobs.drivers.records.ReceivedMessage`, once;
:mod:`~glasswork.jobs.aws_lambda.batch` runs a batch's messages (concurrency, FIFO groups, the
invocation's time), :mod:`~glasswork.jobs.aws_lambda.settle` turns outcomes into dead letters
and retry delays, :mod:`~glasswork.jobs.aws_lambda.checks` checks the deployment on the first
batch from each queue. On a driver that keeps statuses,
:mod:`~glasswork.jobs.aws_lambda.status` records each run's start and end and
:mod:`~glasswork.jobs.aws_lambda.watch` passes cancellations to running jobs. This module
routes events and builds the response.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..drivers.contract import (
    QueueDriver,
    capabilities_of,
    driver_label,
    releases_slots_itself,
)
from ..drivers.records import ReceivedMessage
from ..errors import (
    BatchRetryError,
    ConfigurationError,
    DeadLetterUnavailableError,
    TransientJobError,
)
from ..execution import (
    DeadLetter,
    Done,
    Executor,
    Hook,
    JobContext,
    JobHooks,
    Outcome,
    Retry,
    RunStep,
)
from ..limits import limited_jobs, refuse_unheld_limits
from ..message import JobMessage
from ..metrics.sink import MetricsOption, flush_metrics, metric_sinks
from ..steps import worker_steps
from .batch import CUT, HELD_BACK, NO_TIME, BatchResult, BatchRunner
from .checks import SetupChecks
from .limits import THROTTLED, LambdaLimits
from .records import LambdaMessage, RecordReader
from .settle import BatchSettler
from .source_queues import ClientFactory, RecordQueues, default_client
from .status import LambdaStatuses, StatusUnavailable
from .watch import BatchWatch

if TYPE_CHECKING:
    from ...modules import Module
    from ..idempotency.store import IdempotencyStore

logger = logging.getLogger("glasswork.jobs")

# dict first: isinstance() matches it without the ABC machinery Mapping needs.
_MAPPINGS = (dict, Mapping)

#: How long the first batch waits for the setup checks when Lambda gives no deadline.
CHECKS_WAIT_SECONDS = 5.0


class LambdaWorker:
    """The callable ``bootstrap_worker`` returns: ``handler(event, context)``.

    * SQS event (``{"Records": [...]}``): runs the records and returns the partial batch
      response ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}`` listing only
      the records to retry. When every record is to be retried, or when a partial response
      cannot carry the retries (see ``report_batch_item_failures``), it raises
      :class:`~glasswork.jobs.BatchRetryError` instead, so Lambda returns the batch.
    * EventBridge event (``{"jobName": ...}`` or ``{"detail": {"jobName": ...}}``): runs the
      named job once with the event's ``payload``; a retriable failure, or a dead letter that
      cannot be kept, raises, so Lambda's asynchronous retries apply.

    On a driver that keeps statuses (``capabilities_of(driver).status_batches``, asked
    once, here), each run's start and end are recorded (:mod:`.status`), and running jobs
    see their cancellation (:mod:`.watch`); on any other, none of it is done.
    """

    def __init__(
        self,
        module: Module,
        driver: QueueDriver | None = None,
        hooks: JobHooks | Mapping[str, Hook] | None = None,
        log: logging.Logger | None = None,
        steps: Sequence[RunStep] = (),
        metrics: MetricsOption = None,
        idempotency_store: IdempotencyStore | None = None,
        *,
        report_batch_item_failures: bool = True,
        batch_concurrency: int | None = None,
        sync_concurrency: int = 1,
        deadline_margin: float = 0.5,
        check_setup: bool = True,
    ) -> None:
        from ...modules import Module

        if not isinstance(module, Module):
            raise TypeError(f"module must come from define_module, got {module!r}")
        _check_options(batch_concurrency, sync_concurrency, deadline_margin)
        self.module = module
        self.driver = driver
        self.log = log or logger
        self.report_batch_item_failures = report_batch_item_failures
        self.metrics = metric_sinks(metrics, driver=driver)
        self.executor = Executor.for_module(module, hooks, self.log)
        self.executor.steps = tuple(
            worker_steps(
                self.executor.registry,
                driver,
                steps,
                metrics=self.metrics,
                idempotency_store=idempotency_store,
            )
        )
        self.registry = self.executor.registry
        self.limits = _limits(driver, self.registry, self.log, self.metrics)
        for job in self.registry:
            policy = job.periodic_policy
            if policy is not None and not policy.overlap:
                self.log.warning(
                    "periodic job %r has overlap=False, which the Lambda handler does not "
                    "enforce (EventBridge starts every fire): give the function a reserved "
                    "concurrency of 1 to keep its runs apart",
                    job.name,
                )
        self.services = self.executor.services
        self.queues = RecordQueues(_client_factory(driver))
        self.reader = RecordReader(self.log)
        self.statuses = _statuses(driver, self.log)
        self.settler = BatchSettler(driver, self.queues, self.log, self.statuses)
        self.runner = BatchRunner(
            self.executor,
            self.settler,
            batch_concurrency=batch_concurrency,
            sync_concurrency=sync_concurrency,
            deadline_margin=deadline_margin,
            log=self.log,
            watch=BatchWatch(self.statuses.store, self.log) if self.statuses else None,
            limits=self.limits,
        )
        self.checks = SetupChecks(self.registry, self.queues, self.log) if check_setup else None

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            if type(event) is dict and "Records" in event:  # _dispatch's common case, inline
                return self.handle_sqs(event, context)
            return self._dispatch(event, context)
        finally:
            if self.metrics:
                flush_metrics(self.metrics)  # one EMF line per invocation's batch

    def _dispatch(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if not isinstance(event, _MAPPINGS):
            raise TypeError(f"expected an SQS or EventBridge event (a dict), got {type(event)}")
        if "Records" in event:
            return self.handle_sqs(event, context)
        detail = event.get("detail")
        job_name = event.get("jobName") or (
            detail.get("jobName") if isinstance(detail, Mapping) else None
        )
        if isinstance(job_name, str) and job_name:
            payload = event.get("payload")
            if payload is None and isinstance(detail, Mapping):
                payload = detail.get("payload")
            return self.handle_periodic(job_name, payload, context, event_id=event.get("id"))
        raise ValueError(
            "unrecognised event: expected an SQS batch ({'Records': [...]}) or an EventBridge "
            f"event naming a job ({{'jobName': ...}}); got keys {sorted(event)}"
        )

    def handle_sqs(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """Run an SQS batch; returns the Lambda partial batch response (or raises
        :class:`~glasswork.jobs.BatchRetryError`, see the class docstring)."""
        records = event["Records"]
        if not isinstance(records, list):
            raise ValueError(
                f"the SQS event's 'Records' must be a list of records, got {type(records).__name__}"
            )
        if not records:
            return {"batchItemFailures": []}
        messages = self.reader.read(records)
        if self.limits is not None:
            self.limits.read_attempts(records, messages)
        run = messages
        if self.statuses is not None:
            run = self._start(self.statuses, messages)
            if not run:
                return {"batchItemFailures": []}
        arn = messages[0].source_arn
        checks = (
            self.checks
            if arn and self.checks is not None and self.checks.start(arn, context)
            else None
        )
        result = self.runner.run(
            run, context, fifo=arn.endswith(".fifo"), job_names=checks is not None
        )
        if result.ran:
            assert self.statuses is not None
            self.statuses.ended(result.ran)  # before Lambda deletes the records
        if checks is not None and result.job_names is not None:
            deadline = result.deadline
            wait = CHECKS_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
            checks.finish(arn, result.job_names, wait)
        if result.reported or result.counts is not None:
            self._log_batch(len(messages), result)
        if not result.reported:
            return {"batchItemFailures": []}
        return self._respond(messages, result, arn)

    def _start(
        self, statuses: LambdaStatuses, messages: list[LambdaMessage]
    ) -> list[LambdaMessage]:
        """The messages whose start the status store recorded (the others were cancelled,
        or ended before). When it could not record them, none may run: the batch is
        returned (raises :class:`~glasswork.jobs.BatchRetryError`)."""
        try:
            return statuses.start(messages)
        except StatusUnavailable as exc:
            raise BatchRetryError(
                f"could not record the start of the batch's {len(messages)} records in the "
                f"status store ({exc}); none ran; raising so Lambda returns the batch",
                [m.message_id for m in messages if m.message_id],
            ) from exc

    def _respond(
        self, messages: list[LambdaMessage], result: BatchResult, arn: str
    ) -> dict[str, Any]:
        ids = [m.message_id for m, _ in result.reported if m.message_id]
        if len(result.reported) == len(messages) and not _only_held_back(result):
            reasons = Counter(why for _, why in result.reported)
            raise BatchRetryError(
                f"all {len(messages)} records of the batch are to be retried "
                f"({_tally(reasons)}); raising so Lambda returns the batch to the queue",
                ids,
            )
        why_not_partial = self._why_not_partial(arn, all_named=len(ids) == len(result.reported))
        if why_not_partial is None:
            return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}
        reported = {id(m) for m, _ in result.reported}
        finished = [m for m in messages if id(m) not in reported]
        self.settler.ack(finished)  # a failed delete is logged: that record runs again
        raise BatchRetryError(
            f"{len(result.reported)} of {len(messages)} records are to be retried and a partial "
            f"batch response cannot carry them ({why_not_partial}); the {len(finished)} "
            "finished records were deleted first; raising so Lambda returns the rest",
            ids,
        )

    def _why_not_partial(self, arn: str, *, all_named: bool) -> str | None:
        """Why this batch's retries cannot go in a partial batch response (None: they can)."""
        if not self.report_batch_item_failures:
            return "report_batch_item_failures=False"
        if self.checks is not None and self.checks.partial_responses_ignored(arn):
            return "the event source mapping lacks ReportBatchItemFailures"
        if not all_named:
            return "a record to retry has no messageId"
        return None

    def handle_periodic(
        self, job_name: str, payload: Any = None, context: Any = None, event_id: Any = None
    ) -> dict[str, Any]:
        """Run the job an EventBridge rule names."""
        message = JobMessage.create(
            job_name, payload, queue="periodic", job_id=str(event_id) if event_id else None
        )
        statuses = self.statuses
        if statuses is None:
            outcome = self.executor.execute_sync(message, 1, lambda_context=context)
            received = ctx = None
        else:
            received = ReceivedMessage(message.encode(), None, 1, "periodic", message.job_id)
            if not statuses.may_run(received):
                self.log.info(
                    "periodic job %s %s not run: it ended before (Lambda delivered the event "
                    "again), or it was cancelled",
                    job_name,
                    message.job_id,
                )
                return {"jobName": job_name, "jobId": message.job_id, "status": "skipped"}
            outcome, ctx = self._run_periodic(message, context)
        if isinstance(outcome, Retry):
            if statuses is not None and received is not None:
                statuses.retrying(received, outcome)
            raise TransientJobError(
                f"job {job_name!r} failed; raising so Lambda retries the event: {outcome.error!r}"
            ) from outcome.error
        if isinstance(outcome, DeadLetter):
            why = self.settler.keep(message.encode(), outcome, "periodic")
            if statuses is not None and received is not None:
                statuses.ended([(received, ctx, outcome, why and f"dead letter not kept ({why})")])
            if why is not None:
                raise DeadLetterUnavailableError(
                    f"periodic job {job_name!r} failed for good ({outcome.reason}) and its dead "
                    f"letter could not be kept: {why}; raising so Lambda's asynchronous retries "
                    "and on-failure destination keep the event"
                ) from outcome.error
            return {
                "jobName": job_name,
                "jobId": message.job_id,
                "status": "dead_letter",
                "reason": outcome.reason,
            }
        if statuses is not None and received is not None:
            statuses.ended([(received, ctx, outcome, None)])
        status = "done" if isinstance(outcome, Done) else outcome.kind  # a duplicate is done
        return {"jobName": job_name, "jobId": message.job_id, "status": status}

    def _run_periodic(self, message: JobMessage, context: Any) -> tuple[Outcome, JobContext | None]:
        ctx = self.executor.prepare(message, 1, context)
        if isinstance(ctx, Outcome):
            return ctx, None
        return self.runner.run_watched(ctx), ctx

    def _log_batch(self, size: int, result: BatchResult) -> None:
        reasons = Counter(why for _, why in result.reported)
        late = reasons[NO_TIME] + reasons[CUT]
        if late:
            self.log.warning(
                "%d record(s) did not run to the end within the invocation's time (%.2fs "
                "at the start of the batch, keeping %.2fs to settle it); reported for retry",
                late,
                (result.seconds_left or 0) + self.runner.deadline_margin,
                self.runner.deadline_margin,
            )
        if reasons[HELD_BACK]:
            self.log.info(
                "%d record(s) held back behind an earlier record of their FIFO group; "
                "reported for retry",
                reasons[HELD_BACK],
            )
        if result.counts is not None:  # the summary is built only to be logged
            counts = result.counts + Counter({"reported": len(result.reported)})
            self.log.info("batch of %d: %s", size, _tally(counts) or "empty")


def _only_held_back(result: BatchResult) -> bool:
    """Whether every record reported was held back by its limits (FIFO), or behind one of
    its group that was: nothing failed, so a partial response naming them all is right, and
    raising would make each throttle a function error."""
    reasons = {why for _, why in result.reported}
    return THROTTLED in reasons and reasons <= {THROTTLED, HELD_BACK}


def _tally(counts: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)


def _check_options(
    batch_concurrency: int | None, sync_concurrency: int, deadline_margin: float
) -> None:
    if batch_concurrency is not None and (
        not isinstance(batch_concurrency, int) or batch_concurrency < 1
    ):
        raise ConfigurationError(
            f"batch_concurrency must be a positive integer or None (the whole batch), got "
            f"{batch_concurrency!r}"
        )
    if not isinstance(sync_concurrency, int) or sync_concurrency < 1:
        raise ConfigurationError(
            f"sync_concurrency must be a positive integer (1: sync jobs run in order), got "
            f"{sync_concurrency!r}"
        )
    if not isinstance(deadline_margin, int | float) or deadline_margin < 0:
        raise ConfigurationError(
            f"deadline_margin must be seconds (0 or more), got {deadline_margin!r}"
        )


def _statuses(driver: QueueDriver | None, log: logging.Logger) -> LambdaStatuses | None:
    """The handler's status calls, when ``driver`` keeps statuses (None: it does not, and
    the handler makes none)."""
    if driver is None:
        return None
    caps = capabilities_of(driver)
    if caps.status_batches is None or caps.status is None:
        return None
    return LambdaStatuses(caps.status_batches, caps.status, log)


def _limits(
    driver: QueueDriver | None, registry: Any, log: logging.Logger, metrics: Sequence[object]
) -> LambdaLimits | None:
    """The gate of the handler's limited jobs (None when it has none); refuses them, never
    runs them unlimited, on a driver that cannot hold their limits here."""
    if not limited_jobs(registry):
        return None
    flow = capabilities_of(driver).flow_limits if driver is not None else None
    refuse_unheld_limits(
        registry,
        flow,
        driver_label(driver),
        "Lambda handler",
        runtime_holds=flow is None or releases_slots_itself(flow),
    )
    assert flow is not None
    return LambdaLimits(flow, log, metrics)


def _client_factory(driver: QueueDriver | None) -> ClientFactory:
    """The SQS client for looking at source queues: the SQS driver's own (its region,
    endpoint and credentials) when the worker has one, else one per region. Decided at the
    first look-up, not here: the SQS driver's module imports boto3, which a worker on
    another driver (or none) must not pay for at its cold start."""
    if driver is None:
        return default_client

    def client_for(region: str) -> Any:
        from ..drivers.sqs.driver import SQSQueueDriver

        return driver.client if isinstance(driver, SQSQueueDriver) else default_client(region)

    return client_for


def bootstrap_worker(
    *,
    module: Module,
    driver: QueueDriver | None = None,
    hooks: JobHooks | Mapping[str, Hook] | None = None,
    logger: logging.Logger | None = None,
    steps: Sequence[RunStep] = (),
    metrics: MetricsOption = None,
    idempotency_store: IdempotencyStore | None = None,
    report_batch_item_failures: bool = True,
    batch_concurrency: int | None = None,
    sync_concurrency: int = 1,
    deadline_margin: float = 0.5,
    check_setup: bool = True,
) -> LambdaWorker:
    """Make the AWS Lambda handler for ``module``'s jobs (and every module it imports).

    ``driver`` gives retries their backoff and permanent failures a dead letter (without
    one, dead letters go to the DLQ of the record's queue, from its redrive policy);
    ``hooks`` maps ``on_job_start``/``on_job_complete``/``on_job_failed``/
    ``on_job_dead_letter`` to functions; ``steps`` wrap every run (see
    :class:`~glasswork.jobs.RunStep`). ``metrics`` (an :class:`~glasswork.jobs.EMFMetrics`,
    or sinks) count every run, flushed once per invocation. ``idempotency_store`` keeps the
    keys of ``idempotent`` jobs that name no store of their own.

    ``report_batch_item_failures=False`` raises on any retry, for event source mappings
    without ``FunctionResponseTypes: [ReportBatchItemFailures]``. ``batch_concurrency``
    bounds how many records of a batch run at once (default: all; async handlers run
    concurrently); ``sync_concurrency`` runs sync handlers on that many threads (default 1:
    in order, on the handler's thread). ``deadline_margin`` is the time (seconds) kept free
    before Lambda's deadline to settle a batch. ``check_setup`` checks the event source
    mapping and redrive policy on the first batch from each queue. Duplicate job names,
    idempotent jobs without a store and bad options raise here, at bootstrap.

    >>> handler = bootstrap_worker(module=WorkerModule)   # doctest: +SKIP
    """
    return LambdaWorker(
        module,
        driver,
        hooks,
        logger,
        steps,
        metrics,
        idempotency_store,
        report_batch_item_failures=report_batch_item_failures,
        batch_concurrency=batch_concurrency,
        sync_concurrency=sync_concurrency,
        deadline_margin=deadline_margin,
        check_setup=check_setup,
    )
