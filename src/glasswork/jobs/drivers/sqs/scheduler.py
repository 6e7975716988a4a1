"""The DynamoDB long-delay table, and the scheduler that moves due jobs from it to SQS.

SQS holds a message back for at most 15 minutes, and FIFO queues not at all per message,
so :class:`~glasswork.jobs.SQSQueueDriver` writes such jobs to a DynamoDB table and the
scheduler (a Lambda run every minute, :func:`create_scheduler_handler`, or a loop,
:func:`run_scheduler`) sends each to its queue when it comes due.

Table schema (one table, no indexes)::

    pk          S  partition key: "shard-<n>", n = crc32(job id) % 8
    sk          S  sort key: "<due time, epoch ms, 15 digits>#<job id>"
    body        S  the job message as it goes on the wire
    queue       S  the job's queue name (as configured in the driver's ``queues``)
    job_name    S, job_id S, due_at N (epoch seconds)
    expires_at  N  the TTL attribute: due time + retention (7 days by default)
    claimed_until N, claim_token S, dispatch_attempts N, last_error S  (set by the scheduler)

Finding due jobs is one ``Query`` per shard (``pk = shard AND sk <= now``), oldest first,
never a ``Scan``: however long the scheduler was stopped, everything overdue is found.
The 8 fixed shards spread writes of a burst over 8 partition keys (DynamoDB also splits a
hot key by sort-key range); the count is part of the schema, so producers and the scheduler
always agree on it.

Dispatch is at-least-once and batched: claim (conditional writes setting ``claimed_until``,
up to 100 items in one ``TransactWriteItems``), send (``SendMessageBatch`` through the
driver's ``enqueue_many``, 10 a request), delete (``BatchWriteItem``, 25 a request). A
scheduler that dies after claiming leaves the claims to expire and the next run sends the
jobs; one that dies after sending but before deleting sends them again next time, so a job
can arrive twice only then, with the same job id (``ctx.job.job_id``) to dedupe on.

An item that cannot be sent as it is (``queue``, ``due_at`` or ``body`` missing or of the
wrong type, or a body that is not a job message) is dead-lettered with the reason (to its
queue's dead letter, else the scheduler's ``dead_letter_queue``; logged at ERROR if there is
neither) and deleted, so it never holds up the items behind it.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from botocore.exceptions import ClientError

from ...aws.errors import CONDITION_FAILED, error_code
from ...aws.tables import dynamodb_client, ensure_table
from ...errors import ConfigurationError, MalformedMessageError
from ...message import JobMessage
from ...stop_signals import on_stop_signals
from ..contract import QueueDriver, capabilities_of
from ..records import EnqueueBatchError

logger = logging.getLogger("glasswork.jobs.scheduler")

#: Partition-key shards of the table; part of its schema (see the module docstring).
TABLE_SHARDS = 8
#: The TTL attribute of the table.
TTL_ATTRIBUTE = "expires_at"
_MAX_SQS_DELAY = 900
#: Items claimed in one TransactWriteItems (DynamoDB's limit), and sent and deleted together.
CLAIM_BATCH = 100
#: Seconds between looks for a stop signal while :func:`run_scheduler` waits.
SIGNAL_CHECK = 0.1
#: Keys per BatchWriteItem request (DynamoDB's limit).
DELETE_BATCH = 25
_NAMES = {
    "#pk": "pk",
    "#sk": "sk",
    "#q": "queue",
    "#due": "due_at",
    "#cu": "claimed_until",
}

Clock = Callable[[], float]


def shard_key(job_id: str) -> str:
    """The partition key for a job id."""
    return f"shard-{zlib.crc32(job_id.encode('utf-8')) % TABLE_SHARDS}"


def sort_key(due_at: float, job_id: str) -> str:
    """The sort key: due time in epoch milliseconds, zero-padded so text order is time
    order, then the job id to keep keys unique."""
    return f"{math.ceil(due_at * 1000):015d}#{job_id}"


@dataclass(frozen=True, slots=True)
class DueItem:
    """A due item of the table as the scheduler reads it: its key, the fields it needs, and
    ``problem``, why it cannot be sent as it is (None when it can, ``message`` then set)."""

    pk: str
    sk: str
    queue: str | None
    due_at: float
    message: JobMessage | None
    body: str | None
    attempts: int  # dispatch attempts before this one
    problem: str | None
    raw: Mapping[str, Any]

    @classmethod
    def read(cls, item: Mapping[str, Any]) -> DueItem:
        problems: list[str] = []

        def field(name: str, kind: str) -> Any:
            value = item.get(name)
            if not isinstance(value, Mapping) or not isinstance(value.get(kind), str):
                found = "missing" if value is None else f"not of type {kind}: {value!r:.100}"
                problems.append(f"{name} is {found}")
                return None
            return value[kind]

        queue, due_text, body = field("queue", "S"), field("due_at", "N"), field("body", "S")
        due_at = float(due_text) if due_text is not None else float("nan")  # N: a number
        message = None
        if body is not None:
            try:
                message = JobMessage.from_json(body)
            except MalformedMessageError as exc:
                problems.append(f"body is not a job message: {exc}")
        if queue is None and message is not None:
            queue = message.queue  # where its dead letter goes
        try:
            attempts = int(item.get("dispatch_attempts", {}).get("N", 0))
        except (AttributeError, ValueError):
            attempts = 0
        return cls(
            pk=item["pk"]["S"],
            sk=item["sk"]["S"],
            queue=queue,
            due_at=due_at,
            message=message if not problems else None,
            body=body,
            attempts=attempts,
            problem="; ".join(problems) or None,
            raw=item,
        )


class ScheduledJobsTable:
    """Low-level access to the scheduler table: put, find due, claim, delete."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        if not table_name:
            raise ConfigurationError("the scheduler needs table_name='<DynamoDB table>'")
        self.table_name = table_name
        self.retention = retention
        self._client = client
        self.region = region
        self.endpoint_url = endpoint_url

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client (made on first use)."""
        if self._client is None:
            self._client = dynamodb_client(self.region, self.endpoint_url)
        return self._client

    def put(self, message: JobMessage, due_at: float) -> str:
        """Store ``message`` to be sent at ``due_at`` (epoch seconds); returns the sort key."""
        sk = sort_key(due_at, message.job_id)
        due_ms = int(sk.split("#", 1)[0])  # due_at and the sort key agree to the millisecond
        expires = math.ceil(due_ms / 1000 + self.retention.total_seconds())
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "pk": {"S": shard_key(message.job_id)},
                "sk": {"S": sk},
                "body": {"S": message.encode()},
                "queue": {"S": message.queue},
                "job_name": {"S": message.job_name},
                "job_id": {"S": message.job_id},
                "due_at": {"N": f"{due_ms / 1000:.3f}"},
                TTL_ATTRIBUTE: {"N": str(expires)},
            },
        )
        return sk

    def due(self, until: float, now: float, page_size: int = 100) -> Iterator[DueItem]:
        """Unclaimed (or expired-claim) items due by ``until``, oldest first per shard. An
        item that cannot be sent as it is comes with its :attr:`DueItem.problem`."""
        upper = f"{math.floor(until * 1000):015d}~"  # "~" sorts after "#<job id>"
        for shard in range(TABLE_SHARDS):
            params: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "#pk = :pk AND #sk <= :upper",
                "FilterExpression": "attribute_not_exists(#cu) OR #cu < :now",
                "ProjectionExpression": "#pk, #sk, #q, #due, body, dispatch_attempts",
                "ExpressionAttributeNames": _NAMES,
                "ExpressionAttributeValues": {
                    ":pk": {"S": f"shard-{shard}"},
                    ":upper": {"S": upper},
                    ":now": {"N": f"{now:.3f}"},
                },
                "ConsistentRead": True,
                "Limit": page_size,
            }
            while True:
                page = self.client.query(**params)
                for item in page.get("Items", []):
                    yield DueItem.read(item)
                last = page.get("LastEvaluatedKey")
                if not last:
                    break
                params["ExclusiveStartKey"] = last

    def claim(
        self, pk: str, sk: str, *, now: float, until: float, token: str
    ) -> dict[str, Any] | None:
        """Claim an item until ``until`` unless someone holds a live claim or it is gone.
        Returns the claimed item's attributes, or None."""
        try:
            response = self.client.update_item(
                **self._claim_update(pk, sk, now, until, token), ReturnValues="ALL_NEW"
            )
        except ClientError as exc:
            if error_code(exc) == CONDITION_FAILED:
                return None
            raise
        return dict(response["Attributes"])

    def claim_many(
        self, items: Sequence[DueItem], *, now: float, until: float, token: str
    ) -> list[DueItem]:
        """Claim ``items`` (see :meth:`claim`) in one transaction; returns those now ours.
        Items someone else holds fail their condition and cancel the transaction: it is
        tried once more without them, then item by item."""
        pending = list(items)
        for _ in range(2):
            if len(pending) < 2:
                break
            try:
                self.client.transact_write_items(
                    TransactItems=[
                        {"Update": self._claim_update(i.pk, i.sk, now, until, token)}
                        for i in pending
                    ]
                )
                return pending
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) != len(pending):
                    break
                pending = [
                    item
                    for item, reason in zip(pending, reasons, strict=True)
                    if reason.get("Code") != "ConditionalCheckFailed"
                ]
        return [i for i in pending if self.claim(i.pk, i.sk, now=now, until=until, token=token)]

    def _claim_update(
        self, pk: str, sk: str, now: float, until: float, token: str
    ) -> dict[str, Any]:
        return {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
            "UpdateExpression": "SET #cu = :until, claim_token = :token ADD dispatch_attempts :one",
            "ConditionExpression": (
                "attribute_exists(#pk) AND (attribute_not_exists(#cu) OR #cu < :now)"
            ),
            "ExpressionAttributeNames": {"#pk": "pk", "#cu": "claimed_until"},
            "ExpressionAttributeValues": {
                ":until": {"N": f"{until:.3f}"},
                ":now": {"N": f"{now:.3f}"},
                ":token": {"S": token},
                ":one": {"N": "1"},
            },
        }

    def delete_many(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Remove items (after their jobs were sent), 25 a ``BatchWriteItem``; returns the
        keys DynamoDB still had not processed after a few tries."""
        left: list[tuple[str, str]] = []
        for start in range(0, len(keys), DELETE_BATCH):
            requests = [
                {"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                for pk, sk in keys[start : start + DELETE_BATCH]
            ]
            for attempt in range(4):
                if attempt:
                    time.sleep(0.05 * 2**attempt)
                response = self.client.batch_write_item(RequestItems={self.table_name: requests})
                requests = response.get("UnprocessedItems", {}).get(self.table_name, [])
                if not requests:
                    break
            left += [
                (r["DeleteRequest"]["Key"]["pk"]["S"], r["DeleteRequest"]["Key"]["sk"]["S"])
                for r in requests
            ]
        return left

    def record_failure(self, pk: str, sk: str, *, token: str, error: str, retry_at: float) -> None:
        """Keep our claim until ``retry_at`` (a backoff) and note the error on the item."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression="SET claimed_until = :retry, last_error = :error",
                ConditionExpression="claim_token = :token",
                ExpressionAttributeValues={
                    ":retry": {"N": f"{retry_at:.3f}"},
                    ":error": {"S": error[:2000] or "error"},
                    ":token": {"S": token},
                },
            )
        except ClientError:
            logger.warning("could not record the failure of scheduled item %s", sk, exc_info=True)

    def delete(self, pk: str, sk: str) -> None:
        """Remove an item (after its job was sent)."""
        self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def count(self) -> int:
        """How many items the table holds, by querying each shard (for tests and checks)."""
        total = 0
        for shard in range(TABLE_SHARDS):
            params: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"shard-{shard}"}},
                "Select": "COUNT",
                "ConsistentRead": True,
            }
            while True:
                page = self.client.query(**params)
                total += int(page.get("Count", 0))
                if not page.get("LastEvaluatedKey"):
                    break
                params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return total


@dataclass(frozen=True, slots=True)
class SchedulerRun:
    """What one pass did: jobs sent, sends that failed (retried later), items left because
    another scheduler holds them or a FIFO job is not due yet, and unusable items
    dead-lettered."""

    dispatched: int = 0
    failed: int = 0
    skipped: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "dispatched": self.dispatched,
            "failed": self.failed,
            "skipped": self.skipped,
            "dead_lettered": self.dead_lettered,
        }


class Scheduler:
    """Moves due items from the table to the driver's queues (one pass per :meth:`run_once`).

    ``lookahead`` (seconds, at most 900): jobs for standard SQS queues due within it are sent
    early with the remaining time as ``DelaySeconds``, so they run on time although the
    scheduler only wakes every minute. FIFO queues take no delay; their jobs are sent once
    due. ``claim_seconds``: how long a claim blocks other schedulers; after a crash, the job
    is sent by the first pass after it expires. ``dead_letter_queue``: the queue (a name the
    driver knows) whose dead letter takes unusable items that name no queue with one.
    """

    def __init__(
        self,
        table: ScheduledJobsTable,
        driver: QueueDriver,
        *,
        lookahead: float = 60.0,
        claim_seconds: float = 120.0,
        clock: Clock = time.time,
        dead_letter_queue: str | None = None,
    ) -> None:
        if not 0 <= lookahead <= _MAX_SQS_DELAY:
            raise ConfigurationError(
                f"scheduler lookahead must be 0-{_MAX_SQS_DELAY} seconds, got {lookahead}"
            )
        if claim_seconds <= 0:
            raise ConfigurationError(f"claim_seconds must be positive, got {claim_seconds}")
        self.table = table
        self.driver = driver
        self._delays = capabilities_of(driver).delay_limit  # the SQS driver's: 15 min, no FIFO
        self.lookahead = lookahead
        self.claim_seconds = claim_seconds
        self.clock = clock
        self.dead_letter_queue = dead_letter_queue

    def run_once(self, deadline: float | None = None) -> SchedulerRun:
        """Send every job due now (or within ``lookahead``), up to :data:`CLAIM_BATCH` at a
        time; stops early at ``deadline`` (a :attr:`clock` time), leaving the rest for the
        next pass."""
        tally: Counter[str] = Counter()
        now = self.clock()
        batch: list[DueItem] = []
        for item in self.table.due(now + self.lookahead, now):
            if deadline is not None and self.clock() >= deadline:
                logger.info("scheduler pass stopped at its deadline; the rest waits")
                batch = []
                break
            if item.problem is None and not self._sendable(item, now):
                tally["skipped"] += 1
                continue
            batch.append(item)
            if len(batch) == CLAIM_BATCH:
                self._dispatch(batch, tally)
                batch = []
        if batch:
            self._dispatch(batch, tally)
        run = SchedulerRun(**tally)
        if run.dispatched or run.failed or run.dead_lettered:
            logger.info("scheduler pass: %s", run.as_dict())
        return run

    def _sendable(self, item: DueItem, now: float) -> bool:
        """False for a job not due yet that its queue cannot hold back (FIFO)."""
        assert item.message is not None
        if item.due_at <= now:
            return True
        if self._delays is not None:
            try:
                return self._delays.accepts_delay(item.message.queue, item.due_at - now)
            except ConfigurationError:
                return True  # let the send fail and record why
        return True

    def _dispatch(self, items: list[DueItem], tally: Counter[str]) -> None:
        """Claim, send and delete a batch of items."""
        now = self.clock()
        token = uuid.uuid4().hex
        mine = self.table.claim_many(items, now=now, until=now + self.claim_seconds, token=token)
        tally["skipped"] += len(items) - len(mine)
        done: list[DueItem] = []
        groups: dict[tuple[str, int], list[DueItem]] = defaultdict(list)
        for item in mine:
            if item.message is None:
                if self._dead_letter(item, token):
                    done.append(item)
                    tally["dead_lettered"] += 1
                else:
                    tally["failed"] += 1
                continue
            # SQS delays are whole seconds: jobs due in the same second share a request.
            delay = max(0, math.ceil(item.due_at - self.clock()))
            groups[(item.message.queue, delay)].append(item)
        for (_, delay), group in groups.items():
            sent, failed = self._send(group, delay)
            done += sent
            tally["dispatched"] += len(sent)
            for item, error in failed:
                self._failed(item, token, error)
                tally["failed"] += 1
        # Sent: if we die before this delete, the jobs are sent again after their claims
        # expire (with the same job ids).
        keys = [(item.pk, item.sk) for item in done]
        try:
            left = self.table.delete_many(keys)
        except Exception:
            logger.warning("could not delete sent scheduled jobs", exc_info=True)
            left = keys
        if left:
            logger.warning(
                "sent %d scheduled job(s) but could not delete them; they will be sent again "
                "after their claims expire",
                len(left),
            )

    def _send(
        self, items: list[DueItem], delay: int
    ) -> tuple[list[DueItem], list[tuple[DueItem, BaseException]]]:
        """Send one queue's jobs due in the same second: (sent, failed with why)."""
        messages = [item.message for item in items if item.message is not None]
        try:
            self.driver.enqueue_many(messages, delay)
        except EnqueueBatchError as exc:
            refused = {f.job_id: f for f in exc.failed}
            sent = [i for i in items if i.message is not None and i.message.job_id not in refused]
            failed: list[tuple[DueItem, BaseException]] = [
                (
                    i,
                    RuntimeError(
                        f"{refused[i.message.job_id].code}: {refused[i.message.job_id].message}"
                    ),
                )
                for i in items
                if i.message is not None and i.message.job_id in refused
            ]
            return sent, failed
        except Exception as exc:
            return [], [(item, exc) for item in items]
        return items, []

    def _failed(self, item: DueItem, token: str, error: BaseException) -> None:
        """Note a failed send on the item, keeping our claim for a backoff."""
        attempts = item.attempts + 1
        backoff = min(900.0, 30.0 * 2 ** min(attempts - 1, 5))
        logger.error(
            "scheduler could not send job %s (queue %r, attempt %d); retrying in %.0fs: %r",
            item.sk,
            item.queue,
            attempts,
            backoff,
            error,
            exc_info=error,
        )
        self.table.record_failure(
            item.pk, item.sk, token=token, error=repr(error), retry_at=self.clock() + backoff
        )

    def _dead_letter(self, item: DueItem, token: str) -> bool:
        """Dead-letter an item that cannot be sent: to its queue's dead letter, else the
        scheduler's ``dead_letter_queue``'s; with neither, log it at ERROR. True: delete it.
        False: the dead-letter send failed; the item stays, retried after a backoff."""
        body = item.body if item.body is not None else json.dumps(item.raw, default=repr)
        reason = f"scheduler table item {item.sk} cannot be sent: {item.problem}"
        for queue in dict.fromkeys(q for q in (item.queue, self.dead_letter_queue) if q):
            try:
                if self.driver.dead_letter(body, reason, queue=queue):
                    logger.error("dead-lettered to queue %r's dead letter: %s", queue, reason)
                    return True
            except ConfigurationError:
                continue  # a queue this driver does not know: try the next
            except Exception as exc:
                self._failed(item, token, exc)
                return False
        logger.error(
            "%s; no dead letter to keep it in (set the scheduler's dead_letter_queue), so it "
            "is deleted after logging it: %s",
            reason,
            body,
        )
        return True


class SchedulerHandler:
    """The Lambda handler :func:`create_scheduler_handler` returns: one pass per call,
    stopping 5 seconds before the invocation's time runs out."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def __call__(
        self, event: Mapping[str, Any] | None = None, context: Any = None
    ) -> dict[str, int]:
        deadline = None
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining):
            deadline = self.scheduler.clock() + remaining() / 1000.0 - 5.0
        return self.scheduler.run_once(deadline).as_dict()


def _build(
    table_name: str,
    region: str | None,
    driver: QueueDriver,
    endpoint_url: str | None,
    client: Any,
    lookahead: float,
    claim_seconds: float,
    clock: Clock,
    dead_letter_queue: str | None,
) -> Scheduler:
    if not isinstance(driver, QueueDriver):
        raise ConfigurationError(f"the scheduler needs a QueueDriver, got {driver!r}")
    table = ScheduledJobsTable(table_name, client=client, region=region, endpoint_url=endpoint_url)
    return Scheduler(
        table,
        driver,
        lookahead=lookahead,
        claim_seconds=claim_seconds,
        clock=clock,
        dead_letter_queue=dead_letter_queue,
    )


def create_scheduler_handler(
    *,
    table_name: str,
    driver: QueueDriver,
    region: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    lookahead: float = 60.0,
    claim_seconds: float = 120.0,
    clock: Clock = time.time,
    dead_letter_queue: str | None = None,
) -> SchedulerHandler:
    """The Lambda handler that sends due jobs from the scheduler table; run it every minute
    (e.g. a ``Schedule`` event ``rate(1 minute)``). ``client`` is a boto3 DynamoDB client;
    ``dead_letter_queue`` a queue of the driver whose dead letter takes unusable items that
    name no queue with one.

    >>> handler = create_scheduler_handler(                          # doctest: +SKIP
    ...     table_name=os.environ["SCHEDULED_JOBS_TABLE"],
    ...     region=os.environ["AWS_REGION"],
    ...     driver=SQSQueueDriver(region=..., queues={"default": os.environ["JOB_QUEUE_URL"]}),
    ... )
    """
    scheduler = _build(
        table_name,
        region,
        driver,
        endpoint_url,
        client,
        lookahead,
        claim_seconds,
        clock,
        dead_letter_queue,
    )
    return SchedulerHandler(scheduler)


def run_scheduler(
    *,
    table_name: str,
    driver: QueueDriver,
    region: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    interval: float = 5.0,
    lookahead: float | None = None,
    claim_seconds: float = 120.0,
    stop: threading.Event | None = None,
    clock: Clock = time.time,
    dead_letter_queue: str | None = None,
) -> None:
    """Run the scheduler in a loop, a pass every ``interval`` seconds, until ``stop`` is set
    (or SIGTERM, SIGINT or SIGHUP when called from the main thread). ``lookahead`` defaults to
    ``interval``. A failing pass (say, DynamoDB unreachable) is logged and retried."""
    scheduler = _build(
        table_name,
        region,
        driver,
        endpoint_url,
        client,
        interval if lookahead is None else lookahead,
        claim_seconds,
        clock,
        dead_letter_queue,
    )
    stop = stop or threading.Event()
    # The handler only notes the signal: it runs between two bytecodes of this thread,
    # which may hold the lock Event.set takes (inside stop.wait).
    signalled: list[str] = []
    with on_stop_signals(lambda signum, frame: signalled.append(signal.Signals(signum).name)):
        # Only now: whoever waits for this line may stop the scheduler with a signal.
        logger.info("scheduler started on table %s, every %.1fs", table_name, interval)
        while not (signalled or stop.is_set()):
            try:
                scheduler.run_once()
            except Exception:
                logger.exception("scheduler pass failed; trying again in %.1fs", interval)
            _pause(stop, interval, signalled)
    if signalled:
        logger.info("scheduler stopping on %s", signalled[0])
    logger.info("scheduler stopped")


def _pause(stop: threading.Event, seconds: float, signalled: list[str]) -> None:
    """Wait ``seconds``, or until ``stop`` is set or a stop signal came (looked for every
    :data:`SIGNAL_CHECK` seconds, as the signal handler cannot set ``stop``)."""
    deadline = time.monotonic() + seconds
    while not signalled:
        left = deadline - time.monotonic()
        if left <= 0 or stop.wait(min(left, SIGNAL_CHECK)):
            return


def create_scheduler_table(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
) -> str:
    """Create the scheduler table (on-demand billing, TTL on ``expires_at``) if it does not
    exist; returns its ARN. The same schema in CloudFormation is in ``docs/sqs.md``."""
    client = client or dynamodb_client(region, endpoint_url)
    return ensure_table(client, table_name, ("pk", "sk"), TTL_ATTRIBUTE, wait=wait)
