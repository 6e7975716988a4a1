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

Dispatch is at-least-once: claim (a conditional write setting ``claimed_until``), send,
delete. A scheduler that dies after claiming leaves the claim to expire and the next run
sends the job; one that dies after sending but before deleting sends it again next time, so
a job can arrive twice only then, with the same job id (``ctx.job.job_id``) to dedupe on.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .drivers.base import QueueDriver
from .dynamodb_tables import dynamodb_client, ensure_table
from .errors import ConfigurationError
from .message import JobMessage

logger = logging.getLogger("glasswork.jobs.scheduler")

#: Partition-key shards of the table; part of its schema (see the module docstring).
TABLE_SHARDS = 8
#: The TTL attribute of the table.
TTL_ATTRIBUTE = "expires_at"
_MAX_SQS_DELAY = 900
_BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
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
            self._client = boto3.client(
                "dynamodb",
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                config=_BOTO_CONFIG,
            )
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

    def due(self, until: float, now: float, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Unclaimed (or expired-claim) items due by ``until``, oldest first per shard, as
        ``{"pk", "sk", "queue", "due_at"}`` dicts."""
        upper = f"{math.floor(until * 1000):015d}~"  # "~" sorts after "#<job id>"
        for shard in range(TABLE_SHARDS):
            params: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "#pk = :pk AND #sk <= :upper",
                "FilterExpression": "attribute_not_exists(#cu) OR #cu < :now",
                "ProjectionExpression": "#pk, #sk, #q, #due",
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
                    yield {
                        "pk": item["pk"]["S"],
                        "sk": item["sk"]["S"],
                        "queue": item["queue"]["S"],
                        "due_at": float(item["due_at"]["N"]),
                    }
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
                TableName=self.table_name,
                Key={"pk": {"S": pk}, "sk": {"S": sk}},
                UpdateExpression=(
                    "SET #cu = :until, claim_token = :token ADD dispatch_attempts :one"
                ),
                ConditionExpression=(
                    "attribute_exists(#pk) AND (attribute_not_exists(#cu) OR #cu < :now)"
                ),
                ExpressionAttributeNames={"#pk": "pk", "#cu": "claimed_until"},
                ExpressionAttributeValues={
                    ":until": {"N": f"{until:.3f}"},
                    ":now": {"N": f"{now:.3f}"},
                    ":token": {"S": token},
                    ":one": {"N": "1"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise
        return dict(response["Attributes"])

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
    another scheduler holds them or a FIFO job is not due yet."""

    dispatched: int = 0
    failed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"dispatched": self.dispatched, "failed": self.failed, "skipped": self.skipped}


class Scheduler:
    """Moves due items from the table to the driver's queues (one pass per :meth:`run_once`).

    ``lookahead`` (seconds, at most 900): jobs for standard SQS queues due within it are sent
    early with the remaining time as ``DelaySeconds``, so they run on time although the
    scheduler only wakes every minute. FIFO queues take no delay; their jobs are sent once
    due. ``claim_seconds``: how long a claim blocks other schedulers; after a crash, the job
    is sent by the first pass after it expires.
    """

    def __init__(
        self,
        table: ScheduledJobsTable,
        driver: QueueDriver,
        *,
        lookahead: float = 60.0,
        claim_seconds: float = 120.0,
        clock: Clock = time.time,
    ) -> None:
        if not 0 <= lookahead <= _MAX_SQS_DELAY:
            raise ConfigurationError(
                f"scheduler lookahead must be 0-{_MAX_SQS_DELAY} seconds, got {lookahead}"
            )
        if claim_seconds <= 0:
            raise ConfigurationError(f"claim_seconds must be positive, got {claim_seconds}")
        self.table = table
        self.driver = driver
        self.lookahead = lookahead
        self.claim_seconds = claim_seconds
        self.clock = clock

    def run_once(self, deadline: float | None = None) -> SchedulerRun:
        """Send every job due now (or within ``lookahead``); stops early at ``deadline``
        (a :attr:`clock` time), leaving the rest for the next pass."""
        dispatched = failed = skipped = 0
        now = self.clock()
        for item in self.table.due(now + self.lookahead, now):
            now = self.clock()
            if deadline is not None and now >= deadline:
                logger.info("scheduler pass stopped at its deadline; the rest waits")
                break
            if item["due_at"] > now and not self._can_delay(item["queue"], item["due_at"] - now):
                skipped += 1
                continue
            result = self._dispatch(item["pk"], item["sk"], now)
            if result is None:
                skipped += 1
            elif result:
                dispatched += 1
            else:
                failed += 1
        run = SchedulerRun(dispatched, failed, skipped)
        if dispatched or failed:
            logger.info("scheduler pass: %s", run.as_dict())
        return run

    def _can_delay(self, queue: str, delay: float) -> bool:
        accepts_delay = getattr(self.driver, "accepts_delay", None)  # the SQS driver's
        if accepts_delay is not None:
            try:
                return bool(accepts_delay(queue, delay))
            except ConfigurationError:
                return True  # let the send fail and record why
        return True

    def _dispatch(self, pk: str, sk: str, now: float) -> bool | None:
        """Claim, send, delete one item: True sent, False failed, None not ours."""
        token = uuid.uuid4().hex
        item = self.table.claim(pk, sk, now=now, until=now + self.claim_seconds, token=token)
        if item is None:
            return None
        try:
            message = JobMessage.from_json(item["body"]["S"])
            remaining = float(item["due_at"]["N"]) - self.clock()
            if remaining > 0:
                self.driver.enqueue_in(message, remaining)
            else:
                self.driver.enqueue(message)
        except Exception as exc:
            attempts = int(item.get("dispatch_attempts", {}).get("N", "1"))
            backoff = min(900.0, 30.0 * 2 ** min(attempts - 1, 5))
            logger.error(
                "scheduler could not send job %s (queue %r, attempt %d); retrying in %.0fs: %r",
                sk,
                item.get("queue", {}).get("S"),
                attempts,
                backoff,
                exc,
                exc_info=True,
            )
            self.table.record_failure(
                pk, sk, token=token, error=repr(exc), retry_at=self.clock() + backoff
            )
            return False
        # Sent: if we die before this delete, the item is sent again after the claim expires.
        try:
            self.table.delete(pk, sk)
        except Exception:
            logger.warning(
                "sent scheduled job %s but could not delete it; it will be sent again after "
                "its claim expires",
                sk,
                exc_info=True,
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
) -> Scheduler:
    if not isinstance(driver, QueueDriver):
        raise ConfigurationError(f"the scheduler needs a QueueDriver, got {driver!r}")
    table = ScheduledJobsTable(table_name, client=client, region=region, endpoint_url=endpoint_url)
    return Scheduler(table, driver, lookahead=lookahead, claim_seconds=claim_seconds, clock=clock)


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
) -> SchedulerHandler:
    """The Lambda handler that sends due jobs from the scheduler table; run it every minute
    (e.g. a ``Schedule`` event ``rate(1 minute)``). ``client`` is a boto3 DynamoDB client.

    >>> handler = create_scheduler_handler(                          # doctest: +SKIP
    ...     table_name=os.environ["SCHEDULED_JOBS_TABLE"],
    ...     region=os.environ["AWS_REGION"],
    ...     driver=SQSQueueDriver(region=..., queues={"default": os.environ["JOB_QUEUE_URL"]}),
    ... )
    """
    scheduler = _build(
        table_name, region, driver, endpoint_url, client, lookahead, claim_seconds, clock
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
) -> None:
    """Run the scheduler in a loop, a pass every ``interval`` seconds, until ``stop`` is set
    (or SIGTERM/SIGINT when called from the main thread). ``lookahead`` defaults to
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
    )
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    logger.info("scheduler started on table %s, every %.1fs", table_name, interval)
    try:
        while not stop.is_set():
            try:
                scheduler.run_once()
            except Exception:
                logger.exception("scheduler pass failed; trying again in %.1fs", interval)
            stop.wait(interval)
    finally:
        restore()
    logger.info("scheduler stopped")


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


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
