"""Job status on SQS: a DynamoDB table keeps each job's life (``SQSQueueDriver(status_table=...)``),
what :class:`~glasswork.jobs.drivers.contract.StatusStore` asks of the driver.

SQS itself knows nothing of a job once it is sent, and cannot delete a message by id; so
every status is an item of the table, one per job id, written by the driver at enqueue and
by the workers as the job runs::

    job_id         S  the table's partition key
    state          S  scheduled · pending · running · retrying · done · failed · dead · cancelled
    job_name S, queue S, enqueued_at N (epoch seconds), due_at N (a delayed job's due time)
    attempts       N  runs started
    progress N, progress_note S, result S (JSON text), error S, traceback S (its last 8 KB)
    cancel_requested BOOL  a running job asked to stop
    message_id     S  the SQS message of the last run (a redriven dead letter is another)
    shard S, updated S  the ``history`` index: shard "0"-"7" (crc32 of the job id) and
                   "<epoch ms, 15 digits>#<job id>" (when it last changed)
    expires_at     N  the TTL attribute: for a job that has not ended, 14 days (SQS's longest
                   retention) past its due time or last run; for one that has, its
                   ``result_ttl`` after the end

A waiting job that is cancelled keeps its item as a tombstone (state ``cancelled``): its
message still arrives, and :meth:`StatusTable.record_start`, one conditional ``UpdateItem``
before each run, refuses to start it, as it refuses a redelivery of a job whose end was
recorded. Writes at enqueue are conditional too, so the scheduler sending a long-delayed
job on (through the driver's ``enqueue_many``) leaves its status, a tombstone included,
alone. ``scheduled`` is read as ``pending`` once the due time has passed: nothing is written
when a delay ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import error_code
from ...aws.expressions import expression
from ...aws.tables import Index, dynamodb_client, ensure_table
from ...errors import EnqueueError, StatusUnavailableError
from ...message import JobMessage
from ..records import FinalStatus, JobStatus, ReceivedMessage
from .clients import Clients
from .consuming import SQSConsumer
from .history import HISTORY_ATTRIBUTES, HISTORY_INDEX, TTL_ATTRIBUTE, StatusHistory, status_of
from .job_items import Delivered, StatusRequests, is_condition_failure
from .problems import Settings

logger = logging.getLogger("glasswork.jobs")

#: Items per TransactWriteItems, BatchWriteItem and BatchGetItem request (DynamoDB's limits).
TRANSACT_BATCH, WRITE_BATCH, READ_BATCH = 100, 25, 100
#: Starts recorded side by side by record_start_many (a Lambda batch holds up to 10).
START_THREADS = 10
#: Runs whose attempt count a store remembers between their start and end, at most.
REMEMBERED_RUNS = 10_000
_RETRIED = 5


class NoStatusTable:
    """The status of a driver without a status table: the worker's calls cost nothing
    (a run always starts, finishing is acknowledging), and asking for a status is a
    :class:`StatusUnavailableError` saying how to keep them."""

    enabled = False

    def __init__(self, consumer: SQSConsumer, settings: Settings) -> None:
        self.consumer = consumer
        self.settings = settings

    def unavailable(self) -> StatusUnavailableError:
        where = (
            "add ?status_table=<table> to the sqs:// URL"
            if self.settings.url is not None
            else "pass SQSQueueDriver(status_table=<table>)"
        )
        return StatusUnavailableError(
            f"SQSQueueDriver keeps no job status: {where}; create the table with "
            "create_status_table(...) (docs/sqs.md)"
        )

    def record_start(self, received: ReceivedMessage) -> bool:
        return True

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        return [True] * len(received)

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        return None

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        return None

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        if final.state != "dead":  # a dead one was consumed by its dead-lettering
            self.consumer.ack(received)

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        acked = [received for received, final in finished if final.state != "dead"]
        if acked:
            self.consumer.ack_many(acked)

    def record_ends(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> bool:
        return True

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        return set()  # nothing can have been asked: cancel() needs the table

    def job_status(self, job_id: str) -> JobStatus | None:
        raise self.unavailable()

    def job_history(self, **query: Any) -> list[JobStatus]:
        raise self.unavailable()

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        raise self.unavailable()


class RunsStarted:
    """The attempt count of each run a store recorded the start of, by SQS message id, until
    its end is recorded (so the end is a whole item, which batches; a run whose count is
    not here ends in an ``UpdateItem``). At most :data:`REMEMBERED_RUNS`, oldest forgotten."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}

    def started(self, message_id: str, attempts: int) -> None:
        with self._lock:
            self._attempts.pop(message_id, None)
            self._attempts[message_id] = attempts
            if len(self._attempts) > REMEMBERED_RUNS:
                del self._attempts[next(iter(self._attempts))]

    def ended(self, message_id: str) -> int | None:
        with self._lock:
            return self._attempts.pop(message_id, None)


class EnqueueStatuses:
    """The statuses a driver's enqueues write in the status table (see
    :data:`~.job_items.StatusRequests.ENQUEUE_CONDITION`), on its clients."""

    def __init__(self, requests: StatusRequests, clients: Clients) -> None:
        self.table_name = requests.table_name
        self.requests = requests
        self.clients = clients

    @property
    def client(self) -> Any:
        return self.clients.dynamodb

    def enqueued(self, messages: Sequence[JobMessage], due: float | None) -> list[str]:
        """Write the status of ``messages`` before they are sent (``due``: when delayed
        ones are due); returns the job ids written (not those whose status lives already:
        see :data:`StatusRequests.ENQUEUE_CONDITION`). One conditional ``PutItem``, or one
        ``TransactWriteItems`` per 100 jobs (the only batch write that takes conditions).
        A failure is an :class:`EnqueueError`: nothing is sent then."""
        now = time.time()
        unique = list({m.job_id: m for m in reversed(messages)}.values())[::-1]
        written: list[str] = []
        for start in range(0, len(unique), TRANSACT_BATCH):
            written += self._create(unique[start : start + TRANSACT_BATCH], due, now)
        return written

    def _create(self, chunk: list[JobMessage], due: float | None, now: float) -> list[str]:
        pending = chunk
        try:
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                if len(pending) == 1:
                    try:
                        self.client.put_item(**self.requests.enqueued(pending[0], due, now))
                    except ClientError as exc:
                        if is_condition_failure(exc):
                            return []
                        raise
                    return [pending[0].job_id]
                items = [{"Put": self.requests.enqueued(m, due, now)} for m in pending]
                try:
                    self.client.transact_write_items(TransactItems=items)
                    return [m.job_id for m in pending]
                except ClientError as exc:
                    if error_code(exc) != "TransactionCanceledException":
                        raise
                    pending = self._uncontested(pending, exc)
                    if not pending:
                        return []
            raise RuntimeError(f"conflicting writes after {_RETRIED} attempts")
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            raise self.failure(pending, exc) from exc

    def failure(self, messages: Sequence[JobMessage], exc: Exception) -> EnqueueError:
        """The error of an enqueue whose status could not be written (nothing was sent)."""
        first = messages[0]
        others = f" and {len(messages) - 1} other(s)" if len(messages) > 1 else ""
        return EnqueueError(
            f"could not record job {first.job_name!r} (id {first.job_id}){others} in the "
            f"status table {self.table_name!r}, so nothing was sent: {exc}"
        )

    @staticmethod
    def _uncontested(pending: list[JobMessage], exc: ClientError) -> list[JobMessage]:
        """What to try again after a cancelled transaction: all but the jobs whose status
        lives already. Any other reason than a condition or a conflict is raised."""
        reasons = exc.response.get("CancellationReasons") or []
        if len(reasons) != len(pending):
            raise exc
        codes = [str(reason.get("Code") or "None") for reason in reasons]
        if set(codes) - {"None", "ConditionalCheckFailed", "TransactionConflict"}:
            raise exc
        return [
            m for m, code in zip(pending, codes, strict=True) if code != "ConditionalCheckFailed"
        ]

    def supersede(self, job_id: str, reason: str) -> None:
        """End the status of a waiting job superseded by a debounced enqueue (a tombstone
        its message meets, as a cancel makes); a running one is left to its worker's step.
        A failure is logged: the step ends it when its message arrives."""
        try:
            self.client.update_item(**self.requests.cancel_waiting(job_id, reason, time.time()))
        except (ClientError, BotoCoreError) as exc:
            if not is_condition_failure(exc):
                logger.warning(
                    "could not end the status of job %s (%s); it shows as waiting until its "
                    "message arrives: %s",
                    job_id,
                    reason,
                    exc,
                )

    def forget(self, job_ids: Iterable[str]) -> None:
        """Delete the status of jobs whose send failed (if they have not run since)."""
        for job_id in job_ids:
            try:
                self.client.delete_item(**self.requests.forget(job_id))
            except (ClientError, BotoCoreError) as exc:
                if not is_condition_failure(exc):
                    logger.warning(
                        "could not delete the status of job %s, which was not sent; it shows "
                        "as waiting until it expires: %s",
                        job_id,
                        exc,
                    )


class StatusTable:
    """The statuses of one driver's jobs in the DynamoDB table ``table_name`` (see the
    module), on the driver's clients; finishing deletes messages through its ``consumer``."""

    enabled = True

    def __init__(self, table_name: str, clients: Clients, consumer: SQSConsumer) -> None:
        self.table_name = table_name
        self.requests = requests = StatusRequests(table_name)
        self.clients = clients
        self.at_enqueue = EnqueueStatuses(requests, clients)
        self.consumer = consumer
        self.history = StatusHistory(table_name, clients)
        self._pool: ThreadPoolExecutor | None = None
        self._runs = RunsStarted()

    def __repr__(self) -> str:
        return f"StatusTable({self.table_name!r})"

    # -- the worker's side -----------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self.clients.dynamodb

    def record_start(self, received: ReceivedMessage) -> bool:
        """One conditional ``UpdateItem``: False when the job was cancelled, or ended
        before (this is a redelivery), and must not run."""
        job = Delivered.of(received)
        if job is None:
            return True  # no job id to keep a status under: the worker dead-letters it
        request = self.requests.start(job, received.message_id, time.time())
        try:
            response = self.client.update_item(**request)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        attempts = response.get("Attributes", {}).get("attempts", {}).get("N")
        if attempts is not None:
            self._runs.started(received.message_id, int(attempts))
        return True

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        """:meth:`record_start` of each, the requests side by side (a Lambda batch of 10
        waits for one round trip, not ten): DynamoDB has no batch of conditional updates
        that returns each new attempt count."""
        if len(received) <= 1:
            return [self.record_start(r) for r in received]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(START_THREADS, thread_name_prefix="glasswork-status")
        return list(self._pool.map(self.record_start, received))

    def record_held_back(self, received: ReceivedMessage) -> None:
        """One conditional ``UpdateItem``: the run whose start was recorded did not start
        (its limits held it back): ``pending`` again, its attempt not counted."""
        job = Delivered.of(received)
        if job is None or not received.message_id:
            return
        self._runs.ended(received.message_id)
        request = self.requests.held_back(job.job_id, received.message_id, time.time())
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if not is_condition_failure(exc):  # no start of ours to take back
                raise

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        """One ``UpdateItem``: ``retrying``, with the error (a job that ended is left be;
        one asked to stop while it ran ends ``cancelled`` instead)."""
        job = Delivered.of(received)
        if job is None:
            return
        self._runs.ended(received.message_id)
        now = time.time()
        try:
            self.client.update_item(**self.requests.retry(job.job_id, error, traceback, now))
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            old = exc.response.get("Item") or {}
            if old.get("cancel_requested", {}).get("BOOL"):
                # Asked to stop, it failed instead: it ends cancelled, and the delivery the
                # worker hands back is refused at its next start.
                self._update(self.requests.cancel_failed(job.job_id, error, traceback, now))

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        """One ``UpdateItem``, if the job is running."""
        self._update(self.requests.progress(job_id, fraction, note, time.time()))

    def _update(self, request: dict[str, Any]) -> None:
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        """Record how the job ended, then delete its message (a ``dead`` one only
        records)."""
        self.finish_many([(received, final)])

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        """Record how the jobs ended (:meth:`record_ends`), then delete their messages, one
        ``DeleteMessageBatch`` per 10 (a ``dead`` one only records)."""
        # The end is written before the messages are deleted. Dying between the two leaves
        # a message whose job has ended: SQS delivers it again, record_start refuses it
        # (the end is recorded) and the worker deletes it without running it. The other
        # order could leave a finished job shown as running; and writing done only after
        # the handler returned means a status never says done for a job that did not
        # finish. An end that could not be written does not keep the messages: the jobs
        # ran, and must not run again (their status shows their last state meanwhile).
        self.record_ends(finished)
        acked = [received for received, final in finished if final.state != "dead"]
        if acked:
            self.consumer.ack_many(acked)

    def record_ends(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> bool:
        """Record how the jobs ended, deleting no message (the Lambda service deletes a
        batch's finished messages itself): one ``BatchWriteItem`` per 25 (a job kept 0
        seconds is deleted), or an ``UpdateItem`` each for jobs whose start another process
        recorded. False (logged) when DynamoDB did not take them."""
        now = time.time()
        writes: dict[str, dict[str, Any]] = {}  # by job id: a job delivered twice, once
        updates: list[dict[str, Any]] = []
        for received, final in finished:
            job = Delivered.of(received)
            if job is None:
                continue
            attempts = self._runs.ended(received.message_id)
            if final.keep_for <= 0:
                writes[job.job_id] = {"DeleteRequest": {"Key": self.requests.key(job.job_id)}}
            elif attempts is not None:
                item = self.requests.ended_item(job, received.message_id, attempts, final, now)
                writes[job.job_id] = {"PutRequest": {"Item": item}}
            else:
                updates.append(self.requests.ended_update(job, received.message_id, final, now))
        try:
            self._write(list(writes.values()))
            for request in updates:
                self.client.update_item(**request)
        except (ClientError, BotoCoreError, RuntimeError):
            logger.error(
                "could not record the end of %d job(s) in the status table %r; their status "
                "shows their last state until it expires",
                len(finished),
                self.table_name,
                exc_info=True,
            )
            return False
        return True

    def _write(self, entries: list[dict[str, Any]]) -> None:
        """``BatchWriteItem`` 25 at a time, retrying what DynamoDB leaves unprocessed."""
        for start in range(0, len(entries), WRITE_BATCH):
            chunk = entries[start : start + WRITE_BATCH]
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                response = self.client.batch_write_item(RequestItems={self.table_name: chunk})
                chunk = response.get("UnprocessedItems", {}).get(self.table_name, [])
                if not chunk:
                    break
            else:
                raise RuntimeError(f"DynamoDB left {len(chunk)} status write(s) unprocessed")

    # -- cancelling --------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """A waiting job becomes a tombstone (one conditional ``UpdateItem``); a running
        one is asked to stop (a second). False for a job unknown, expired or ended."""
        for _ in range(3):  # the job may move on between the two writes: look again
            now = time.time()
            try:
                self.client.update_item(**self.requests.cancel_waiting(job_id, reason, now))
                return True
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
                old = exc.response.get("Item") or {}
            if old.get("state", {}).get("S") != "running":
                return False
            try:
                self.client.update_item(**self.requests.cancel_running(job_id, now))
                return True
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise
        return False

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these running jobs were asked to stop: ``BatchGetItem``, 100 a request."""
        ids = list(dict.fromkeys(job_ids))
        asked: set[str] = set()
        for start in range(0, len(ids), READ_BATCH):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [
                        self.requests.key(job_id) for job_id in ids[start : start + READ_BATCH]
                    ],
                    **expression({}, ProjectionExpression="#job_id, #cancel_requested, #state"),
                }
            }
            for attempt in range(_RETRIED):
                if attempt:
                    time.sleep(min(1.0, 0.05 * 2.0**attempt))
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    if item.get("cancel_requested", {}).get("BOOL") and (
                        item.get("state", {}).get("S") == "running"
                    ):
                        asked.add(item["job_id"]["S"])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return asked

    # -- reading ---------------------------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        """``GetItem`` (strongly consistent)."""
        item = self.client.get_item(
            TableName=self.table_name, Key=self.requests.key(job_id), ConsistentRead=True
        ).get("Item")
        return status_of(item, time.time()) if item else None

    def job_history(self, **query: Any) -> list[JobStatus]:
        """See :class:`~.history.StatusHistory`."""
        return self.history.page(**query)


def create_status_table(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
) -> str:
    """Create the status table (on-demand billing, TTL on ``expires_at``, the ``history``
    index) if it does not exist; returns its ARN. The same schema in CloudFormation is in
    ``docs/sqs.md``."""
    client = client or dynamodb_client(region, endpoint_url)
    history = Index(HISTORY_INDEX, ("shard", "updated"), HISTORY_ATTRIBUTES)
    return ensure_table(
        client, table_name, ("job_id",), TTL_ATTRIBUTE, wait=wait, indexes=[history]
    )
