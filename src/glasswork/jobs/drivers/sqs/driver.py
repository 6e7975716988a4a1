"""SQSQueueDriver: jobs on Amazon SQS, long delays through the DynamoDB scheduler table.

>>> driver = SQSQueueDriver(                                     # doctest: +SKIP
...     region="eu-west-1",
...     queues={"default": os.environ["JOB_QUEUE_URL"]},
...     scheduler_table=os.environ.get("SCHEDULED_JOBS_TABLE"),
... )

The driver is its settings and the parts it owns, each made here with what it needs and
nothing more: :class:`~.clients.Clients` (boto3), :class:`~.queues.QueueDirectory` (URLs,
DLQs, size limits), :class:`~.sending.Sender`, :class:`~.delays.DelayTable` (the scheduler
table), :class:`~.unique.UniqueKeys`, :class:`~.producing.Producer` (where an enqueue goes),
:class:`~.consuming.SQSConsumer`, :class:`~.dead_letters.SQSDeadLetters` and
:class:`~.lookup.SQSJobLookup`. Its methods hand each call to the part that does it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...message import JobMessage
from ..contract import (
    AsyncEnqueuer,
    BatchAck,
    ConfiguredQueues,
    Consuming,
    DeadLetterAdmin,
    DeadLetterSearch,
    Debounce,
    DelayLimit,
    FlowLimits,
    JobFinder,
    LeaseExtension,
    NativeAsync,
    QueueCounts,
    QueueDriver,
    RunSteps,
    SetupCheck,
    StatusStore,
)
from ..records import (
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterRecord,
    EnqueueBatchError,
    EnqueueResult,
    FailedEnqueue,
    FinalStatus,
    FoundJob,
    JobStatus,
    QueueStats,
    ReceivedMessage,
)
from .clients import Clients
from .consuming import SQSConsumer
from .dead_letters import (
    REASON_ATTRIBUTE,
    SOURCE_QUEUE_ATTRIBUTE,
    TRACEBACK_ATTRIBUTE,
    SQSDeadLetters,
)
from .delays import DelayTable
from .fifo import deduplication_id, fifo_id
from .flow import ReleaseSlots, SQSFlow
from .limits import LimitsTable
from .lookup import SQSJobLookup
from .problems import Settings
from .producing import Producer
from .queues import MAX_SQS_DELAY_SECONDS, QueueDirectory
from .sending import Sender
from .status import NoStatusTable, StatusTable
from .unique import ReleaseUniqueKeys, UniqueKeys

if TYPE_CHECKING:
    from ...execution import RunStep
    from ...limits import JobLimits
    from .scheduler import ScheduledJobsTable

__all__ = [
    "MAX_SQS_DELAY_SECONDS",
    "REASON_ATTRIBUTE",
    "SOURCE_QUEUE_ATTRIBUTE",
    "TRACEBACK_ATTRIBUTE",
    "EnqueueBatchError",
    "FailedEnqueue",
    "SQSQueueDriver",
    "deduplication_id",
    "fifo_id",
]


class SQSQueueDriver(
    QueueDriver,
    Consuming,
    BatchAck,
    LeaseExtension,
    QueueCounts,
    ConfiguredQueues,
    DelayLimit,
    DeadLetterAdmin,
    DeadLetterSearch,
    JobFinder,
    RunSteps,
    NativeAsync,
    SetupCheck,
    StatusStore,
    FlowLimits,
    Debounce,
):
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
    It also makes debounced enqueues possible (``enqueue(..., debounce=)``); without it the
    driver has no :class:`~glasswork.jobs.drivers.contract.Debounce` group.

    ``status_table`` (a DynamoDB table made by
    :func:`~glasswork.jobs.drivers.sqs.status.create_status_table`) keeps each job's status,
    result and cancellation (``JobService.status/wait/cancel``; see
    :mod:`glasswork.jobs.drivers.sqs.status`). Without it the worker's status calls cost
    nothing and asking for a status is a
    :class:`~glasswork.jobs.errors.StatusUnavailableError` saying how to enable it.
    SQS queues have no order: a job with a non-zero priority is refused.

    ``limits_table`` (a DynamoDB table made by
    :func:`~glasswork.jobs.drivers.sqs.limits.create_limits_table`) holds
    ``define_job(rate_limit=..., concurrency_limit=...)`` across every worker and Lambda
    invocation (see :mod:`glasswork.jobs.drivers.sqs.flow`); without it the driver lacks
    :class:`~glasswork.jobs.drivers.contract.FlowLimits`, and workers refuse limited jobs.

    Each queue's size limit is its ``MaximumMessageSize``, read once per queue (262,144
    bytes when it cannot be read). ``client`` / ``dynamodb_client`` take ready boto3 clients
    (otherwise they are made on first use from ``region`` and ``endpoint_url``).

    ``url`` is the ``sqs://`` URL the driver was made from
    (:func:`~glasswork.jobs.driver_from_url` sets it), so errors name its parameters
    rather than these arguments.
    """

    name = "sqs"
    #: A fairness key is the MessageGroupId of standard queues (SQS fair queues).
    fairness = "message-group"

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
        status_table: str | None = None,
        limits_table: str | None = None,
        url: str | None = None,
    ) -> None:
        self.settings = settings = Settings(url)
        self.region = region
        self.endpoint_url = endpoint_url
        self.scheduler_table = scheduler_table
        self.scheduler_retention = scheduler_retention
        self.batch_retries = batch_retries
        self.unique_table = unique_table
        self.status_table = status_table
        self.limits_table = limits_table
        self.clients = clients = Clients(
            region=region,
            endpoint_url=endpoint_url,
            settings=settings,
            sqs=client,
            dynamodb=dynamodb_client,
        )
        self.directory = directory = QueueDirectory(queues, dead_letter_queues, settings, clients)
        self.unique_keys = (
            UniqueKeys(unique_table, lambda: clients.dynamodb, unique_ttl) if unique_table else None
        )
        self.sender = Sender(
            directory, clients, batch_retries=batch_retries, by_unique_key=self.unique_keys is None
        )
        self.delays = DelayTable(
            scheduler_table,
            directory=directory,
            clients=clients,
            settings=settings,
            retention=scheduler_retention,
        )
        self.consumer = consumer = SQSConsumer(directory, clients)
        table = StatusTable(status_table, clients, consumer) if status_table else None
        self.statuses: StatusTable | NoStatusTable = table or NoStatusTable(consumer, settings)
        if table is None:  # no status kept: the Lambda handler skips the status calls
            self.record_start_many = self.record_ends = None  # type: ignore[assignment]
        self.producer = Producer(
            directory=directory,
            sender=self.sender,
            delays=self.delays,
            unique_keys=self.unique_keys,
            statuses=table.at_enqueue if table is not None else None,
            settings=settings,
        )
        if self.unique_keys is None:  # debounce is kept in the unique-key table
            self.enqueue_debounced = None  # type: ignore[assignment]
        self.dead_letter_admin = SQSDeadLetters(directory, clients, self.unique_keys)
        self.lookup = SQSJobLookup(self.dead_letter_admin, scheduler_table, clients)
        self.limits = LimitsTable(limits_table, lambda: clients.dynamodb) if limits_table else None
        self.flow = (
            SQSFlow(self.limits, consumer, clients, table) if self.limits is not None else None
        )
        if self.flow is None:  # no limits table: no FlowLimits (workers refuse limited jobs)
            self.acquire = self.throttle_counts = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        extras = "".join(
            f", {k}={v!r}"
            for k, v in (
                ("scheduler_table", self.scheduler_table),
                ("unique_table", self.unique_table),
                ("status_table", self.status_table),
                ("limits_table", self.limits_table),
            )
            if v
        )
        return f"SQSQueueDriver(region={self.region!r}, queues={sorted(self.queues)!r}{extras})"

    # -- configuration -----------------------------------------------------------------

    @property
    def queues(self) -> dict[str, str]:
        """Configured queue names and their URLs."""
        return self.directory.urls

    @property
    def dead_letter_queues(self) -> dict[str, str]:
        """Configured DLQ URLs by queue name (others come from redrive policies)."""
        return self.directory.dead_letter_urls

    @property
    def client(self) -> Any:
        """The boto3 SQS client (made on first use)."""
        return self.clients.sqs

    @property
    def dynamodb(self) -> Any:
        """The boto3 DynamoDB client (made on first use), for the scheduler and unique-key
        tables."""
        return self.clients.dynamodb

    @property
    def table(self) -> ScheduledJobsTable:
        """The DynamoDB scheduler table; a :class:`ConfigurationError` without
        ``scheduler_table``."""
        return self.delays.table

    def check(self, queues: Sequence[str] | None = None) -> None:
        """Ask SQS about each of ``queues`` (None: every configured one) and its configured
        DLQ: a mistake in the setup is a :class:`ConfigurationError` naming the setting to
        fix (see :meth:`.queues.QueueDirectory.check`)."""
        self.directory.check(queues)

    def message_limit(self, queue: str) -> int:
        """The queue's ``MaximumMessageSize`` (read once; 262,144 when it cannot be read)."""
        return self.directory.message_limit(queue)

    def limit_of_url(self, url: str) -> int:
        """The ``MaximumMessageSize`` of the queue at ``url`` (read once)."""
        return self.directory.limit_of_url(url)

    def queue_name(self, queue: str) -> str:
        """The configured name for ``queue``: a configured name, a physical queue name, a
        queue URL or a queue ARN. Raises :class:`ConfigurationError` for an unknown queue."""
        return self.directory.queue_name(queue)

    def queue_url(self, queue: str) -> str:
        """The URL of ``queue`` (any form :meth:`queue_name` accepts)."""
        return self.directory.queue_url(queue)

    def is_fifo(self, queue: str) -> bool:
        """Whether ``queue`` is a FIFO queue (its URL ends in ``.fifo``)."""
        return self.directory.is_fifo(queue)

    def accepts_delay(self, queue: str, delay_seconds: float) -> bool:
        """Whether SQS itself can hold a message for ``delay_seconds`` on ``queue``."""
        return self.directory.accepts_delay(queue, delay_seconds)

    def dead_letter_queue_url(self, queue: str) -> str | None:
        """The DLQ URL for ``queue``: configured, or from its redrive policy (cached)."""
        return self.directory.dead_letter_queue_url(queue)

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self.producer.route(message, 0, time.time())

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.producer.route(message, delay_seconds, time.time() + delay_seconds)

    def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        if run_at.tzinfo is None:
            raise ValueError(f"enqueue_at needs an aware datetime, got naive {run_at}")
        due = run_at.timestamp()
        return self.producer.route(message, due - time.time(), due)

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        """Send ``messages`` with ``SendMessageBatch``, 10 a request (fewer when the bodies
        pass SQS's 256 KiB request limit). Entries SQS rejects are retried ``batch_retries``
        times; any still failing raise :class:`EnqueueBatchError` listing them. Messages
        SQS cannot delay go to the scheduler table one by one."""
        return self.producer.enqueue_many(messages, delay_seconds)

    def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """Send ``message`` delayed ``window_seconds``, superseding the debounced job that
        holds its unique key (in the unique-key table: see :mod:`.unique`); only with
        ``unique_table``."""
        return self.producer.debounce(message, max(0.0, window_seconds))

    def run_steps(self) -> Sequence[RunStep]:
        """With ``unique_table``: release a finished job's unique key; with
        ``limits_table``: free a limited run's concurrency slot when it ends."""
        steps: list[RunStep] = []
        if self.unique_keys is not None:
            steps.append(ReleaseUniqueKeys(self.unique_keys))
        if self.limits is not None:
            steps.append(ReleaseSlots(self.limits))
        return steps

    def async_enqueuer(self) -> AsyncEnqueuer | None:
        """Enqueues on aiobotocore (``pip install 'glasswork[async]'``), None without it."""
        try:
            from .async_enqueuer import AsyncSQSEnqueuer
        except ImportError:
            return None
        return AsyncSQSEnqueuer(self)

    # -- consuming: see .consuming --------------------------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Receive up to ``max_messages`` from ``queues`` (None: every configured queue),
        long polling up to ``wait_seconds`` (at most 20), the wait shared between queues."""
        return self.consumer.receive(queues, max_messages, wait_seconds)

    def ack(self, received: ReceivedMessage) -> None:
        """Delete the message (``DeleteMessage``)."""
        self.consumer.ack(received)
        if self.limits is not None:
            self.limits.release_holders([received.message_id])

    def ack_many(self, received: Iterable[ReceivedMessage]) -> None:
        """Delete several messages with ``DeleteMessageBatch``, 10 a request; raises
        :class:`RuntimeError` naming the entries SQS refused."""
        if self.limits is not None:
            received = list(received)
            self.limits.release_holders(r.message_id for r in received)
        self.consumer.ack_many(received)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        """Make the message visible again after ``delay_seconds`` (at most 12 hours)."""
        if self.limits is not None:
            self.limits.release_holders([received.message_id])
        self.consumer.nack(received, delay_seconds)

    @property
    def visibility_timeout(self) -> float:
        """How long a received message stays hidden: the shortest ``VisibilityTimeout`` of
        the configured queues, read from SQS on first use."""
        return self.consumer.visibility_timeout

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep received messages hidden ``seconds`` more from now, and the concurrency
        slots they hold with them; returns how many are still held."""
        until = time.time() + seconds
        held = self.consumer.extend_leases(received, seconds)
        if self.limits is not None:
            self.limits.extend((r.message_id for r in received), until)
        return held

    # -- flow limits: see .flow and .limits ---------------------------------------------------

    #: The run's end frees its slots (:class:`.flow.ReleaseSlots`), so the Lambda handler,
    #: which settles finished records through no driver call, can hold limits too.
    releases_slots_itself = True

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
    ) -> float | None:
        """Take the delivery's concurrency slot and start from the limits table, or put it
        back without spending an attempt (see :mod:`.flow`)."""
        assert self.flow is not None  # the method is None without a limits table
        return self.flow.acquire(received, job_name, key, limits)

    def throttle_counts(self) -> Mapping[str, int]:
        """How many deliveries of each job its limits held back, across every worker on this backend (job name -> count; jobs never held back are absent)."""  # noqa: E501
        assert self.limits is not None
        return self.limits.throttle_counts()

    # -- dead letters: see .dead_letters --------------------------------------------------

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
        return self.dead_letter_admin.send(body, reason, queue=queue, traceback=traceback)

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Up to ``limit`` dead letters of ``queue``'s DLQ (None: every queue's), oldest
        first, peeked and left in place."""
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
        queue), newest first."""
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

    # -- inspecting ----------------------------------------------------------------------

    def stats(self, queues: Sequence[str] | None = None) -> dict[str, QueueStats]:
        """Approximate counts per queue (SQS's own): ``ready`` (visible), ``delayed``,
        ``in_flight`` (received, not yet deleted) and ``dead`` (the DLQ's depth; a DLQ
        shared by several queues counts for each)."""
        counts = {}
        for name in self.directory.names(queues):
            attributes = self.clients.sqs.get_queue_attributes(
                QueueUrl=self.directory.urls[name],
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            ).get("Attributes", {})
            dlq = self.directory.dead_letter_queue_url(name)
            counts[name] = QueueStats(
                name,
                ready=int(attributes.get("ApproximateNumberOfMessages", 0)),
                delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
                in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
                dead=self.dead_letter_admin.depth(dlq) if dlq else 0,
            )
        return counts

    @property
    def job_lookup_scope(self) -> str:
        """Where :meth:`find_job` looks, and where it cannot, as the dashboard says it."""
        return self.lookup.scope

    def find_job(self, job_id: str) -> list[FoundJob]:
        """Job ``job_id`` among the scheduler table's delayed jobs (when the driver has
        one) and the dead letters (see :mod:`.lookup`)."""
        return self.lookup.find_job(job_id)

    # -- status: see .status ---------------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job's status in the status table (one strongly consistent ``GetItem``)."""
        return self.statuses.job_status(job_id)

    def job_history(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        """Jobs newest first from the status table's ``history`` index (see
        :mod:`.history`)."""
        return self.statuses.job_history(
            state=state, job_name=job_name, queue=queue, limit=limit, before=before
        )

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """A waiting job becomes a tombstone that its message meets when it arrives; a
        running one is asked to stop."""
        return self.statuses.cancel(job_id, reason)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these running jobs were asked to stop (``BatchGetItem``)."""
        return self.statuses.cancel_requested(job_ids)

    def record_start(self, received: ReceivedMessage) -> bool:
        """One conditional ``UpdateItem`` before a run (none without a status table)."""
        return self.statuses.record_start(received)

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        """:meth:`record_start` of each, the requests side by side (one round trip's wait
        for a Lambda batch)."""
        return self.statuses.record_start_many(received)

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        self.statuses.record_retry(received, error, traceback)

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        self.statuses.record_progress(job_id, fraction, note)

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        """Record the end, then delete the message (as :meth:`ack`; a dead one only
        records). Without a status table: :meth:`ack`."""
        if self.limits is not None:
            self.limits.release_holders([received.message_id])
        self.statuses.finish(received, final)

    def record_ends(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> bool:
        """Record how the jobs ended without deleting their messages (the Lambda service
        deletes a batch's finished records itself); nothing without a status table."""
        return self.statuses.record_ends(finished)

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """:meth:`finish` of each: one ``BatchWriteItem`` per 25, one
        ``DeleteMessageBatch`` per 10 (without a status table: :meth:`ack_many`)."""
        if self.limits is not None:
            self.limits.release_holders(r.message_id for r, _ in finished)
        self.statuses.finish_many(finished)
