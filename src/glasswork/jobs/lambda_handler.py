"""bootstrap_worker: the AWS Lambda handler for SQS batches and EventBridge events."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .drivers.base import QueueDriver, ReceivedMessage
from .errors import TransientJobError
from .execution import (
    DeadLetter,
    Done,
    Executor,
    Hook,
    JobHooks,
    Retry,
    RunStep,
    send_to_dead_letter,
)
from .message import JobMessage
from .metrics.sink import MetricsOption, flush_metrics, metric_sinks
from .steps import worker_steps

if TYPE_CHECKING:
    from ..modules import Module
    from .idempotency.store import IdempotencyStore

logger = logging.getLogger("glasswork.jobs")


class LambdaWorker:
    """The callable ``bootstrap_worker`` returns: ``handler(event, context)``.

    * SQS event (``{"Records": [...]}``): runs each record and returns the partial batch
      response ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}`` listing only
      the records to retry. Needs ``FunctionResponseTypes: [ReportBatchItemFailures]`` on the
      event source mapping. On FIFO queues processing stops at the first retry and the rest
      of the batch is reported, so order holds.
    * EventBridge event (``{"jobName": ...}`` or ``{"detail": {"jobName": ...}}``): runs the
      named job once with the event's ``payload``; a retriable failure raises, so Lambda's
      asynchronous retries apply.
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
    ) -> None:
        from ..modules import Module

        if not isinstance(module, Module):
            raise TypeError(f"module must come from define_module, got {module!r}")
        self.module = module
        self.driver = driver
        self.log = log or logger
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
        self.services = self.executor.services

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        try:
            return self._dispatch(event, context)
        finally:
            flush_metrics(self.metrics)  # one EMF line per invocation's batch

    def _dispatch(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if not isinstance(event, Mapping):
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
        """Run an SQS batch; returns the Lambda partial batch response."""
        failures: list[dict[str, str]] = []
        tally: Counter[str] = Counter()
        halted = False
        for record in event["Records"]:
            message_id = record["messageId"]
            if halted:
                failures.append({"itemIdentifier": message_id})
                tally["skipped"] += 1
                continue
            attributes = record.get("attributes") or {}
            attempt = int(attributes.get("ApproximateReceiveCount", 1))
            body = record.get("body") or ""
            outcome = self.executor.execute_sync(
                body, attempt, lambda_context=context, attributes=attributes
            )
            tally[outcome.kind] += 1
            if isinstance(outcome, Retry):
                failures.append({"itemIdentifier": message_id})
                self._delay_retry(record, outcome)
                # FIFO: a later message of the group must not run before this one.
                halted = str(record.get("eventSourceARN", "")).endswith(".fifo")
            elif isinstance(outcome, DeadLetter) and not self._dead_letter(
                body, outcome, _queue_name(record)
            ):
                failures.append({"itemIdentifier": message_id})
        if self.log.isEnabledFor(logging.INFO):  # the summary is built only to be logged
            self.log.info(
                "batch of %d: %s",
                len(event["Records"]),
                ", ".join(f"{k}={v}" for k, v in sorted(tally.items())) or "empty",
            )
        return {"batchItemFailures": failures}

    def handle_periodic(
        self, job_name: str, payload: Any = None, context: Any = None, event_id: Any = None
    ) -> dict[str, Any]:
        """Run the job an EventBridge rule names."""
        message = JobMessage.create(
            job_name, payload, queue="periodic", job_id=str(event_id) if event_id else None
        )
        outcome = self.executor.execute_sync(message, 1, lambda_context=context)
        if isinstance(outcome, Retry):
            raise TransientJobError(
                f"job {job_name!r} failed; raising so Lambda retries the event: {outcome.error!r}"
            ) from outcome.error
        if isinstance(outcome, DeadLetter):
            self._dead_letter(message.encode(), outcome, "periodic")
            return {
                "jobName": job_name,
                "jobId": message.job_id,
                "status": "dead_letter",
                "reason": outcome.reason,
            }
        status = "done" if isinstance(outcome, Done) else "discarded"
        return {"jobName": job_name, "jobId": message.job_id, "status": status}

    def _delay_retry(self, record: Mapping[str, Any], outcome: Retry) -> None:
        """Apply the job's backoff by pushing the message's visibility out, when the driver
        can (SQS); otherwise SQS redelivers after the queue's visibility timeout."""
        if self.driver is None:
            return
        received = ReceivedMessage(
            body=record.get("body") or "",
            receipt=record.get("receiptHandle"),
            attempt=int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1)),
            queue=_queue_name(record),
            message_id=record["messageId"],
            attributes={"eventSourceARN": record.get("eventSourceARN")},
        )
        try:
            self.driver.nack(received, outcome.delay)
        except NotImplementedError:
            pass
        except Exception:
            self.log.warning(
                "could not set the retry delay of message %s", received.message_id, exc_info=True
            )

    def _dead_letter(self, body: str, outcome: DeadLetter, queue: str) -> bool:
        """Hand the message to the driver's dead letter. False (report a batch failure, so
        nothing is lost) when the driver could not take it."""
        return send_to_dead_letter(self.driver, body, outcome, queue, self.log)


def _queue_name(record: Mapping[str, Any]) -> str:
    return str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1] or "default"


def bootstrap_worker(
    *,
    module: Module,
    driver: QueueDriver | None = None,
    hooks: JobHooks | Mapping[str, Hook] | None = None,
    logger: logging.Logger | None = None,
    steps: Sequence[RunStep] = (),
    metrics: MetricsOption = None,
    idempotency_store: IdempotencyStore | None = None,
) -> LambdaWorker:
    """Make the AWS Lambda handler for ``module``'s jobs (and every module it imports).

    ``driver`` gives permanent failures a dead letter (e.g. the SQS driver's DLQ) and retries
    their backoff; ``hooks`` maps ``on_job_start``/``on_job_complete``/``on_job_failed``/
    ``on_job_dead_letter`` to functions. ``steps`` wrap every run (see
    :class:`~glasswork.jobs.RunStep`). ``metrics`` (an :class:`~glasswork.jobs.EMFMetrics`,
    or sinks) count every run, flushed once per invocation. ``idempotency_store`` keeps the
    keys of ``idempotent`` jobs that name no store of their own. Duplicate job names and
    idempotent jobs without a store raise here, at bootstrap.

    >>> handler = bootstrap_worker(module=WorkerModule)   # doctest: +SKIP
    """
    return LambdaWorker(module, driver, hooks, logger, steps, metrics, idempotency_store)
