"""SQSQueueDriver: jobs on Amazon SQS, long delays through the DynamoDB scheduler table.

>>> driver = SQSQueueDriver(                                     # doctest: +SKIP
...     region="eu-west-1",
...     queues={"default": os.environ["JOB_QUEUE_URL"]},
...     scheduler_table=os.environ.get("SCHEDULED_JOBS_TABLE"),
... )

This is the only module (with :mod:`glasswork.jobs.drivers.sqs.scheduler`) that imports boto3.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from ...aws.errors import error_code
from ...errors import ConfigurationError, EnqueueError, MalformedMessageError
from ...message import MAX_MESSAGE_BYTES, JobMessage
from ...telemetry import sqs_message_attributes
from ..contract import AsyncEnqueuer, QueueDriver
from ..records import DeadLetterRecord, EnqueueBatchError, EnqueueResult, FailedEnqueue, QueueStats
from .consuming import SQSConsumer
from .dead_letters import (
    REASON_ATTRIBUTE,
    SOURCE_QUEUE_ATTRIBUTE,
    TRACEBACK_ATTRIBUTE,
    SQSDeadLetters,
    dead_letter_attributes,
)
from .fifo import deduplication_id, fifo_id
from .lookup import SQSJobLookup
from .problems import DENIED, Settings, explain, no_region
from .sending import BatchSend, chunks, send_error, sent
from .unique import ReleaseUniqueKeys, UniqueKeys

if TYPE_CHECKING:
    from ...execution import RunStep
    from ..records import DeadLetterPage, DeadLetterQuery
    from .scheduler import ScheduledJobsTable

__all__ = [
    "REASON_ATTRIBUTE",
    "SOURCE_QUEUE_ATTRIBUTE",
    "TRACEBACK_ATTRIBUTE",
    "EnqueueBatchError",
    "FailedEnqueue",
    "SQSQueueDriver",
    "deduplication_id",
    "fifo_id",
]

logger = logging.getLogger("glasswork.jobs")

#: SQS's largest per-message delay (DelaySeconds); longer delays go to the scheduler table.
MAX_SQS_DELAY_SECONDS = 900

_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
#: For check(): a mistake in the setup should show in seconds, not after every retry.
_CHECK_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=5
)


class SQSQueueDriver(SQSConsumer, SQSJobLookup, QueueDriver):
    """Send jobs to SQS queues and, for workers, receive, ack, nack and dead-letter them.

    ``queues`` maps a job's ``queue`` name to a queue URL; a URL ending in ``.fifo`` is a
    FIFO queue. Delays up to 15 minutes use SQS ``DelaySeconds``; longer delays, and any
    delay on a FIFO queue, are written to the DynamoDB ``scheduler_table`` (see
    :mod:`glasswork.jobs.drivers.sqs.scheduler`). ``dead_letter_queues`` maps queue names to
    DLQ URLs; a queue without one uses the DLQ of its redrive policy, looked up once.

    ``unique_table`` (a DynamoDB table with the scheduler table's schema; that table may
    serve) makes unique keys hold on every queue: a second enqueue of a pending key raises
    :class:`~glasswork.jobs.DuplicateJobError`, and the key is released when the job finishes
    or after ``unique_ttl`` past its due time (see :mod:`glasswork.jobs.drivers.sqs.unique`).

    Each queue's size limit is its ``MaximumMessageSize``, read once per queue (262,144
    bytes when it cannot be read). ``client`` / ``dynamodb_client`` take ready boto3 clients
    (otherwise they are made on first use from ``region`` and ``endpoint_url``).

    ``url`` is the ``sqs://`` URL the driver was made from
    (:func:`~glasswork.jobs.driver_from_url` sets it), so errors name its parameters
    rather than these arguments.
    """

    name = "sqs"

    def __init__(
        self,
        *,
        queues: Mapping[str, str],
        region: str | None = None,
        scheduler_table: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        dead_letter_queues: Mapping[str, str] | None = None,
        dynamodb_client: Any = None,
        scheduler_retention: timedelta = timedelta(days=7),
        batch_retries: int = 2,
        unique_table: str | None = None,
        unique_ttl: timedelta = timedelta(days=1),
        url: str | None = None,
    ) -> None:
        self.settings = settings = Settings(url)
        if not isinstance(queues, Mapping) or not queues:
            raise ConfigurationError(
                "SQSQueueDriver needs queues={'default': 'https://sqs.<region>.amazonaws.com/"
                "<account>/<queue>', ...}"
            )
        for queue, queue_url in queues.items():
            _check_url(settings.name("queues", queue), queue_url)
        dead_letter_queues = dict(dead_letter_queues or {})
        for queue, queue_url in dead_letter_queues.items():
            _check_url(settings.name("dead_letter_queues", queue), queue_url)
            if queue not in queues:
                where = "the queue.<name>= parameters" if url is not None else "queues"
                raise ConfigurationError(
                    f"{settings.name('dead_letter_queues', queue)} names queue {queue!r}, "
                    f"which is not in {where} ({', '.join(sorted(queues))})"
                )
        self.queues: dict[str, str] = dict(queues)
        self.dead_letter_queues = dead_letter_queues
        self.region = region
        self.endpoint_url = endpoint_url
        self.scheduler_table = scheduler_table
        self.scheduler_retention = scheduler_retention
        self.batch_retries = batch_retries
        self._client = client
        self._check_client = client  # check()'s: the caller's, or one that gives up sooner
        self._dynamodb_client = dynamodb_client
        self._table: ScheduledJobsTable | None = None
        # Physical queue name (the last part of a URL or ARN) -> configured name, so
        # records from Lambda, which carry only the queue ARN, find their URL.
        self._by_physical = {url.rstrip("/").rsplit("/", 1)[-1]: q for q, url in queues.items()}
        self._discovered_dlq: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._next_queue = 0
        self._visibility: float | None = None
        self._limits: dict[str, int] = {}  # queue URL -> MaximumMessageSize
        self.unique_table = unique_table
        self.unique_keys = (
            UniqueKeys(unique_table, lambda: self.dynamodb, unique_ttl) if unique_table else None
        )
        self._warned_unique = False
        self.dead_letter_admin = SQSDeadLetters(self)
        self._checked: set[str] = set()  # queue URLs check() found

    def __repr__(self) -> str:
        extras = "".join(
            f", {k}={v!r}"
            for k, v in (
                ("scheduler_table", self.scheduler_table),
                ("unique_table", self.unique_table),
            )
            if v
        )
        return f"SQSQueueDriver(region={self.region!r}, queues={sorted(self.queues)!r}{extras})"

    # -- configuration -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The boto3 SQS client (made on first use)."""
        if self._client is None:
            self._client = self._new_client("sqs")
        return self._client

    @property
    def dynamodb(self) -> Any:
        """The boto3 DynamoDB client (made on first use), for the scheduler and unique-key
        tables."""
        if self._dynamodb_client is None:
            self._dynamodb_client = self._new_client("dynamodb")
        return self._dynamodb_client

    def _new_client(self, service: str, config: Config = _BOTO_CONFIG) -> Any:
        try:
            return boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        except NoRegionError:
            raise no_region(self.settings) from None

    def check(self, queues: Sequence[str] | None = None) -> None:
        """Ask SQS about each of ``queues`` (None: every configured one) and its configured
        DLQ (``GetQueueAttributes``): no credentials, no region, an endpoint that does not
        answer or a queue that does not exist is a :class:`ConfigurationError` naming the
        setting to fix. A queue these credentials may not describe is left to the calls
        that use it."""
        names = [self.queue_name(q) for q in queues] if queues is not None else list(self.queues)
        for name in names:
            self._check_queue(name, self.queues[name], "queues")
            dlq = self.dead_letter_queues.get(name)
            if dlq is not None:
                self._check_queue(name, dlq, "dead_letter_queues")

    def _check_queue(self, name: str, url: str, setting: str) -> None:
        if url in self._checked:
            return
        if self._check_client is None:
            self._check_client = self._new_client("sqs", _CHECK_CONFIG)
        try:
            response = self._check_client.get_queue_attributes(
                QueueUrl=url, AttributeNames=["MaximumMessageSize"]
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in DENIED:
                return
            problem = explain(
                exc,
                self.settings,
                endpoint_url=self.endpoint_url,
                queue=name,
                url=url,
                setting=setting,
            )
            if problem is None:
                raise
            raise problem from exc
        self.remember_limit(url, response)
        self._checked.add(url)

    def message_limit(self, queue: str) -> int:
        """The queue's ``MaximumMessageSize`` (read once; 262,144 when it cannot be read)."""
        return self.limit_of_url(self.queue_url(queue))

    def limit_of_url(self, url: str) -> int:
        """The ``MaximumMessageSize`` of the queue at ``url`` (read once)."""
        limit = self._limits.get(url)
        if limit is None:
            try:
                response = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["MaximumMessageSize"]
                )
            except (ClientError, BotoCoreError) as exc:
                response = {}
                logger.info("cannot read MaximumMessageSize of %s (%s): using 262,144", url, exc)
            limit = self.remember_limit(url, response)
        return limit

    def remember_limit(self, url: str, response: Mapping[str, Any]) -> int:
        """Keep the limit a ``GetQueueAttributes`` response gives (the async path reads it
        too); the default 262,144 when the response has none."""
        value = response.get("Attributes", {}).get("MaximumMessageSize")
        limit = int(value) if value else MAX_MESSAGE_BYTES
        self._limits[url] = limit
        return limit

    @property
    def table(self) -> ScheduledJobsTable:
        """The DynamoDB scheduler table; a :class:`ConfigurationError` without
        ``scheduler_table``."""
        if self._table is None:
            if not self.scheduler_table:
                raise ConfigurationError(
                    "this job needs the DynamoDB scheduler table, but the driver has none: "
                    f"{self.settings.add('scheduler_table', '<table name>')} (create it with "
                    "glasswork.jobs.drivers.sqs.create_scheduler_table) and run the scheduler"
                )
            from .scheduler import ScheduledJobsTable

            self._table = ScheduledJobsTable(
                self.scheduler_table,
                client=self.dynamodb,
                region=self.region,
                endpoint_url=self.endpoint_url,
                retention=self.scheduler_retention,
            )
        return self._table

    def queue_name(self, queue: str) -> str:
        """The configured name for ``queue``: a configured name, a physical queue name, a
        queue URL or a queue ARN. Raises :class:`ConfigurationError` for an unknown queue."""
        if queue in self.queues:
            return queue
        physical = queue.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        found = self._by_physical.get(physical)
        if found is None:
            configured = ", ".join(repr(q) for q in sorted(self.queues))
            raise ConfigurationError(
                f"unknown queue {queue!r}: the driver configures {configured}; "
                f"{self.settings.add('queues', '<queue url>', queue)} or set the job's queue "
                "to one of these"
            )
        return found

    def queue_url(self, queue: str) -> str:
        """The URL of ``queue`` (any form :meth:`queue_name` accepts)."""
        return self.queues[self.queue_name(queue)]

    def is_fifo(self, queue: str) -> bool:
        """Whether ``queue`` is a FIFO queue (its URL ends in ``.fifo``)."""
        return self.queue_url(queue).endswith(".fifo")

    def accepts_delay(self, queue: str, delay_seconds: float) -> bool:
        """Whether SQS itself can hold a message for ``delay_seconds`` on ``queue``."""
        return delay_seconds <= MAX_SQS_DELAY_SECONDS and not self.is_fifo(queue)

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self._route(message, 0, time.time())

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self._route(message, delay_seconds, time.time() + delay_seconds)

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        if run_at.tzinfo is None:
            raise ValueError(f"enqueue_at needs an aware datetime, got naive {run_at}")
        due = run_at.timestamp()
        return self._route(message, due - time.time(), due)

    def _route(self, message: JobMessage, delay: float, due: float) -> EnqueueResult:
        """Take the unique key, then send now, with SQS's own delay, or through the
        scheduler table, as ``delay`` (seconds from now; ``due`` is the same moment as an
        epoch time) allows. A failed send gives the key back."""
        taken = self._claim([message], delay)
        try:
            if delay <= 0:
                return self._send(message, 0)
            if self.accepts_delay(message.queue, delay):
                return self._send(message, delay)
            return self._schedule(message, due)
        except BaseException:
            self._unclaim(taken)
            raise

    def _claim(self, messages: Sequence[JobMessage], delay: float) -> list[JobMessage]:
        """Take the unique keys of ``messages`` (with ``unique_table``); see
        :mod:`glasswork.jobs.drivers.sqs.unique`."""
        if self.unique_keys is None:
            self.warn_unique_ignored(messages)
            return []
        return self.unique_keys.claim(list(messages), delay)

    def _unclaim(self, taken: list[JobMessage]) -> None:
        if taken and self.unique_keys is not None:
            try:
                self.unique_keys.release(taken)
            except Exception:
                logger.warning("could not give back %d unique key(s)", len(taken), exc_info=True)

    def warn_unique_ignored(self, messages: Sequence[JobMessage]) -> None:
        """Say once that unique keys are not enforced without ``unique_table``."""
        if self._warned_unique or all(m.unique_key is None for m in messages):
            return
        self._warned_unique = True
        logger.warning(
            "job %r has a unique key, which SQS does not enforce (standard queues ignore it; "
            "FIFO queues drop a repeat within 5 minutes, silently): %s for DuplicateJobError",
            next(m.job_name for m in messages if m.unique_key is not None),
            self.settings.add("unique_table", "<DynamoDB table>"),
        )

    def run_steps(self) -> Sequence[RunStep]:
        """With ``unique_table``: release a finished job's unique key."""
        return [ReleaseUniqueKeys(self.unique_keys)] if self.unique_keys is not None else []

    def async_enqueuer(self) -> AsyncEnqueuer | None:
        """Enqueues on aiobotocore (``pip install 'glasswork[async]'``), None without it."""
        try:
            from .async_enqueuer import AsyncSQSEnqueuer
        except ImportError:
            return None
        return AsyncSQSEnqueuer(self)

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Send ``messages`` with ``SendMessageBatch``, 10 a request (fewer when the bodies
        pass SQS's 256 KiB request limit). Entries SQS rejects are retried ``batch_retries``
        times; any still failing raise :class:`EnqueueBatchError` listing them. Messages
        SQS cannot delay go to the scheduler table one by one."""
        results: list[EnqueueResult | None] = [None] * len(messages)
        batched, scheduled = self.plan_batch(messages, delay_seconds)
        taken = self._claim(messages, delay_seconds)
        try:
            failed = self._enqueue_planned(messages, delay_seconds, batched, scheduled, results)
        except BaseException:
            self._unclaim(taken)
            raise
        sent = [r for r in results if r is not None]
        if failed:
            failed_ids = {f.job_id for f in failed}
            self._unclaim([m for m in taken if m.job_id in failed_ids])
            raise EnqueueBatchError(failed, sent, 1 + max(0, self.batch_retries))
        return sent

    def plan_batch(
        self, messages: Sequence[JobMessage], delay_seconds: float
    ) -> tuple[dict[str, list[int]], list[int]]:
        """Which messages go in ``SendMessageBatch`` requests (queue URL → indexes) and
        which to the scheduler table. Every queue is resolved here, so a bad one fails the
        call before anything is sent."""
        batched: dict[str, list[int]] = {}
        scheduled: list[int] = []
        for index, message in enumerate(messages):
            if delay_seconds > 0 and not self.accepts_delay(message.queue, delay_seconds):
                scheduled.append(index)
            else:
                batched.setdefault(self.queue_url(message.queue), []).append(index)
        return batched, scheduled

    def _enqueue_planned(
        self,
        messages: Sequence[JobMessage],
        delay_seconds: float,
        batched: dict[str, list[int]],
        scheduled: list[int],
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        failed = self.schedule_many(messages, scheduled, time.time() + delay_seconds, results)
        for url, indexes in batched.items():
            for chunk in self.chunks(url, messages, indexes):
                failed.extend(self._send_chunk(url, messages, chunk, delay_seconds, results))
        return failed

    def schedule_many(
        self,
        messages: Sequence[JobMessage],
        indexes: list[int],
        due: float,
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        """Write ``messages[indexes]`` to the scheduler table one by one; returns the failures."""
        failed: list[FailedEnqueue] = []
        for index in indexes:
            message = messages[index]
            try:
                results[index] = self._schedule(message, due)
            except EnqueueError as exc:
                cause = exc.__cause__
                code = error_code(cause) if isinstance(cause, ClientError) else type(cause).__name__
                failed.append(
                    FailedEnqueue(message.job_id, message.job_name, message.queue, code, str(exc))
                )
        return failed

    def chunks(
        self, url: str, messages: Sequence[JobMessage], indexes: list[int]
    ) -> Iterable[list[int]]:
        """``indexes`` split into ``SendMessageBatch`` requests: at most 10 entries, and
        bodies within the queue's size limit in total."""
        limit = self.limit_of_url(url)
        return chunks(indexes, [messages[i].encode() for i in indexes], limit)

    def _send_chunk(
        self,
        url: str,
        messages: Sequence[JobMessage],
        chunk: list[int],
        delay_seconds: float,
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        batch = BatchSend(self, url, messages, chunk, delay_seconds, results)
        for attempt in range(batch.attempts):
            if attempt:
                time.sleep(batch.pause(attempt))
            entries = batch.entries(attempt)
            try:
                response = self.client.send_message_batch(QueueUrl=url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                response = batch.failed_request(exc, entries)
            if batch.settle(response):
                break
        return batch.failures()

    def _batch_entry(
        self, entry_id: str, message: JobMessage, delay_seconds: float, attempt: int
    ) -> dict[str, Any]:
        """One SendMessageBatch entry (``attempt`` counts retries of this entry from 0)."""
        return {"Id": entry_id, **self._send_params(message, delay_seconds)}

    def _send_params(self, message: JobMessage, delay_seconds: float) -> dict[str, Any]:
        """``SendMessage`` parameters (less the queue URL); shared with the async path."""
        params: dict[str, Any] = {"MessageBody": message.encode(self.message_limit(message.queue))}
        if message.trace and (
            attributes := sqs_message_attributes(message, self.message_limit(message.queue))
        ):
            params["MessageAttributes"] = attributes  # the trace context, for any consumer
        if self.is_fifo(message.queue):
            params["MessageGroupId"] = fifo_id(message.group_id or message.job_name)
            params["MessageDeduplicationId"] = deduplication_id(
                message, by_unique_key=self.unique_keys is None
            )
        elif delay_seconds > 0:
            params["DelaySeconds"] = min(MAX_SQS_DELAY_SECONDS, math.ceil(delay_seconds))
        return params

    def _send(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        url = self.queue_url(message.queue)
        try:
            response = self.client.send_message(
                QueueUrl=url, **self._send_params(message, delay_seconds)
            )
        except (ClientError, BotoCoreError) as exc:
            raise send_error(message, url, exc) from exc
        return sent(message, response, delay_seconds)

    def _schedule(self, message: JobMessage, due: float) -> EnqueueResult:
        self.queue_url(message.queue)  # an unknown queue fails now, not at dispatch
        if not self.scheduler_table:
            fifo = self.is_fifo(message.queue)
            why = (
                f"queue {message.queue!r} is FIFO, and SQS FIFO queues take no per-message delay"
                if fifo
                else f"the delay is over SQS's {MAX_SQS_DELAY_SECONDS // 60}-minute limit"
            )
            raise ConfigurationError(
                f"job {message.job_name!r} is due in {due - time.time():.0f}s but {why}: "
                f"{self.settings.add('scheduler_table', '<DynamoDB table>')} and run the "
                "scheduler (glasswork.jobs.create_scheduler_handler)"
            )
        try:
            key = self.table.put(message, due)
        except (ClientError, BotoCoreError) as exc:
            raise EnqueueError(
                f"could not store job {message.job_name!r} (id {message.job_id}), due "
                f"{datetime.fromtimestamp(due, UTC).isoformat()}, in the scheduler table "
                f"{self.scheduler_table!r}: {exc}"
            ) from exc
        return EnqueueResult(
            f"scheduled:{key}", message.job_id, message.queue, datetime.fromtimestamp(due, UTC)
        )

    # -- dead letters ------------------------------------------------------------------

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        """Send ``body`` to the dead-letter queue of ``queue``, with ``reason``, the source
        queue and the ``traceback`` as message attributes (trimmed to what the DLQ's message
        size leaves). The DLQ is ``dead_letter_queues[queue]`` or else the
        ``deadLetterTargetArn`` of the queue's redrive policy; returns False when the queue
        has neither.

        A queue this driver does not know raises :class:`ConfigurationError` rather than
        return False: the worker then leaves the message on its queue, where the queue's
        redrive policy still catches it, instead of dropping it."""
        name = self.queue_name(queue or "default")
        dlq = self.dead_letter_queue_url(name)
        if dlq is None:
            return False
        params: dict[str, Any] = {
            "QueueUrl": dlq,
            "MessageBody": body,
            "MessageAttributes": dead_letter_attributes(
                body, reason, name, self.limit_of_url(dlq), traceback
            ),
        }
        if dlq.endswith(".fifo"):
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            params["MessageGroupId"] = fifo_id(_group_of(body) or "dead-letter")
            params["MessageDeduplicationId"] = digest
        self.client.send_message(**params)
        return True

    def dead_letter_queue_url(self, queue: str) -> str | None:
        """The DLQ URL for ``queue``: configured, or from its redrive policy (cached)."""
        name = self.queue_name(queue)
        configured = self.dead_letter_queues.get(name)
        if configured is not None:
            return configured
        if name not in self._discovered_dlq:
            self._discovered_dlq[name] = self._discover_dlq(self.queues[name])
        return self._discovered_dlq[name]

    def _discover_dlq(self, url: str) -> str | None:
        response = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            logger.warning("queue %s has no redrive policy and no DLQ is configured", url)
            return None
        target = str(json.loads(policy).get("deadLetterTargetArn", ""))
        parts = target.split(":")
        if len(parts) != 6:
            return None
        account, dlq_name = parts[4], parts[5]
        # A DLQ lives in its source queue's account and region, so its URL is the source URL
        # with the last two parts swapped (no sqs:GetQueueUrl permission needed).
        base = url.rstrip("/").rsplit("/", 2)[0]
        return f"{base}/{account}/{dlq_name}"

    # -- monitoring and dead letters -------------------------------------------------------

    def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Approximate counts per queue (SQS's own): ``ready`` (visible), ``delayed``,
        ``in_flight`` (received, not yet deleted) and ``dead`` (the DLQ's depth; a DLQ
        shared by several queues counts for each)."""
        names = [self.queue_name(q) for q in queues] if queues is not None else list(self.queues)
        counts = {}
        for name in names:
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.queues[name],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            ).get("Attributes", {})
            dlq = self.dead_letter_queue_url(name)
            counts[name] = QueueStats(
                name,
                ready=int(attributes.get("ApproximateNumberOfMessages", 0)),
                delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
                in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                dead=self.dead_letter_admin.depth(dlq) if dlq else 0,
            )
        return counts

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Up to ``limit`` dead letters of ``queue``'s DLQ (None: every queue's), oldest
        first, peeked and left in place (see :mod:`glasswork.jobs.drivers.sqs.dead_letters`)."""
        return self.dead_letter_admin.records(queue, limit)

    def redrive(self, ids: Sequence[str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters (``ids`` as :meth:`dead_letters` gives them, or all) back to
        their queues: SQS's ``StartMessageMoveTask`` where it can, else in batches."""
        return self.dead_letter_admin.redrive(ids, queue=queue)

    def purge_dead_letters(
        self, ids: Sequence[str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead letters (``ids``, or all; of ``queue``'s DLQ, or every queue's)."""
        return self.dead_letter_admin.purge(ids, queue=queue)

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches among those peeked (SQS cannot search a
        queue: see :mod:`glasswork.jobs.drivers.sqs.dead_letters`), newest first."""
        return self.dead_letter_admin.page(query, cursor, limit)

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter whose SQS message id is ``record_id`` (the DLQs are peeked)."""
        return self.dead_letter_admin.find(record_id)

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back to its queue."""
        return self.dead_letter_admin.redrive_matching(query)

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches."""
        return self.dead_letter_admin.purge_matching(query)


# -- helpers ------------------------------------------------------------------------------


def _check_url(setting: str, url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"{setting} must be an SQS queue URL (https://...), got {url!r}")


def _group_of(body: str) -> str | None:
    try:
        message = JobMessage.from_json(body)
    except MalformedMessageError:
        return None
    return message.group_id or message.job_name
