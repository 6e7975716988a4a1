"""Checks of how a deployment feeds the Lambda worker, made on the first batch from each queue.

* **Partial batch responses.** Lambda honours ``{"batchItemFailures": [...]}`` only when the
  event source mapping has ``FunctionResponseTypes: [ReportBatchItemFailures]``; without it
  a returned response counts as complete success and every failed job is deleted with the
  batch. The check reads the mapping (``lambda:ListEventSourceMappings``); when the setting
  is missing it logs an ERROR naming the fix, and the worker raises on any retry instead.
* **maxReceiveCount vs max_attempts.** A redrive policy whose ``maxReceiveCount`` is at or
  below a job's ``retry.max_attempts`` moves the job to the DLQ before the worker's last
  attempt: without ``on_job_dead_letter`` and without a reason. A WARNING names the job,
  both numbers and the fix, once per queue and job.

The lookups run on a thread beside the first batch, so they add no time to it unless the
batch is quicker than the two AWS calls. A permission the role lacks is named once at INFO.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from ..aws.errors import error_code
from .source_queues import RecordQueues, in_lambda

if TYPE_CHECKING:
    from ..execution import JobRegistry

PARTIAL_RESPONSES = "ReportBatchItemFailures"


def default_lambda_client(region: str) -> Any:
    """A boto3 Lambda client for ``region`` (endpoint from the usual AWS settings)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3)
    return boto3.client("lambda", region_name=region, config=config)


class SetupChecks:
    """The checks of one worker: :meth:`start` on each batch (only the first batch from a
    queue starts anything), :meth:`finish` before the batch's response is built."""

    def __init__(
        self,
        registry: JobRegistry,
        queues: RecordQueues,
        log: logging.Logger,
        lambda_client_for: Any = default_lambda_client,
    ) -> None:
        self.registry = registry
        self.queues = queues
        self.log = log
        self._lambda_client_for = lambda_client_for
        self._started: dict[str, threading.Thread] = {}
        self._without_partial_responses: set[str] = set()
        self._checked_jobs: dict[str, set[str]] = {}
        self._told: set[str] = set()
        self._lock = threading.Lock()

    def start(self, arn: str, context: Any) -> bool:
        """Begin the checks of queue ``arn`` if this is its first batch; True when the
        queue is checked (:meth:`finish` then wants the batch's job names). Checks run only
        inside Lambda (see :func:`~glasswork.jobs.aws_lambda.source_queues.in_lambda`),
        whose context names the function (``invoked_function_arn``)."""
        if arn in self._started:
            return True
        function_arn = getattr(context, "invoked_function_arn", None)
        if not isinstance(function_arn, str) or not function_arn.startswith("arn:"):
            return False
        if not in_lambda():
            return False
        thread = threading.Thread(
            target=self._check_queue, args=(arn, function_arn), daemon=True, name="glasswork-checks"
        )
        self._started[arn] = thread
        thread.start()
        return True

    def finish(self, arn: str, job_names: set[str], wait: float) -> None:
        """Wait up to ``wait`` seconds for the checks of ``arn``, then compare the jobs of
        ``job_names`` seen for the first time with the queue's redrive policy."""
        thread = self._started.get(arn)
        if thread is None:
            return
        thread.join(max(0.0, wait))
        if thread.is_alive():
            return  # compared on a later batch
        checked = self._checked_jobs.setdefault(arn, set())
        new = job_names - checked
        if new:
            checked |= new
            self._compare_attempts(arn, sorted(new))

    def partial_responses_ignored(self, arn: str) -> bool:
        """Whether the mapping from ``arn`` to this function lacks ReportBatchItemFailures."""
        return arn in self._without_partial_responses

    # -- the checks ------------------------------------------------------------------------

    def _check_queue(self, arn: str, function_arn: str) -> None:
        try:
            self.queues.setup(arn)  # warms the cache for _compare_attempts and dead letters
            self._check_mapping(arn, function_arn)
        except Exception:  # a check must never disturb the jobs
            self.log.info("could not check the setup of queue %s", arn, exc_info=True)

    def _check_mapping(self, arn: str, function_arn: str) -> None:
        region = function_arn.split(":")[3]
        try:
            client = self._lambda_client_for(region)
            pages = client.get_paginator("list_event_source_mappings").paginate(EventSourceArn=arn)
            mappings = [m for page in pages for m in page.get("EventSourceMappings", [])]
        except ImportError:
            return  # no boto3: nothing else of this worker talks to AWS either
        except Exception as exc:
            if _denied(exc):
                self._tell_once(
                    "mapping",
                    "not checking that the event source mapping of %s reports batch item "
                    "failures: allow lambda:ListEventSourceMappings to the function's role to "
                    "enable the check",
                    arn,
                )
            else:
                self._tell_once(
                    "mapping", "could not read the event source mappings of %s: %s", arn, exc
                )
            return
        ours = [
            m
            for m in mappings
            if _unqualified(m.get("FunctionArn", "")) == _unqualified(function_arn)
        ]
        this = [m for m in ours if m.get("FunctionArn") == function_arn] or ours
        if not this or any(
            PARTIAL_RESPONSES in (m.get("FunctionResponseTypes") or []) for m in this
        ):
            return
        self._without_partial_responses.add(arn)
        self.log.error(
            "the event source mapping %s from %s to %s lacks FunctionResponseTypes: "
            "[ReportBatchItemFailures], so Lambda would ignore this worker's partial batch "
            "response and delete failed jobs with their batch. Fix: add "
            "FunctionResponseTypes: [ReportBatchItemFailures] to the mapping (in SAM, to the "
            "SQS event's Properties), or bootstrap_worker(report_batch_item_failures=False). "
            "Until then the worker raises on any retry, so Lambda returns the whole batch",
            this[0].get("UUID", "?"),
            arn,
            function_arn,
        )

    def _compare_attempts(self, arn: str, names: list[str]) -> None:
        setup = self.queues.known(arn)
        if setup is None:
            return
        if setup.problem is not None:
            self._tell_once(
                "redrive", "not comparing max_attempts with maxReceiveCount: %s", setup.problem
            )
            return
        limit = setup.max_receive_count
        if limit is None:
            return
        for name in names:
            job = self.registry.get(name)
            if job is None or job.retry is None or job.retry.max_attempts < limit:
                continue
            attempts = job.retry.max_attempts
            self.log.warning(
                "job %r has retry.max_attempts=%d, but the redrive policy of queue %s has "
                "maxReceiveCount=%d: SQS moves the job to the DLQ before the worker's last "
                "attempt, without on_job_dead_letter and without a reason. Fix: set "
                "maxReceiveCount above every job's max_attempts (e.g. %d), or lower the job's "
                "retry.max_attempts below %d",
                name,
                attempts,
                setup.name,
                limit,
                attempts + 5,
                limit,
            )

    def _tell_once(self, topic: str, message: str, *args: Any) -> None:
        with self._lock:
            if topic in self._told:
                return
            self._told.add(topic)
        self.log.info(message, *args)


def _denied(error: Exception) -> bool:
    """Whether an AWS call failed for want of permission (AccessDeniedException, HTTP 403)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(error) in ("AccessDeniedException", "AccessDenied") or status == 403


def _unqualified(function_arn: str) -> str:
    """``arn:aws:lambda:<region>:<account>:function:<name>`` without a version or alias."""
    return ":".join(function_arn.split(":")[:7])
