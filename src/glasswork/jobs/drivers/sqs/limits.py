"""Flow limits on SQS: the DynamoDB limits table (``SQSQueueDriver(limits_table=...)``), where
every worker and Lambda invocation on the queues takes a limited job's starts and slots.

Items (partition key ``pk``, sort key ``sk``, both strings; TTL on ``expires_at``)::

    pk = "rate#<job>"        sk = "<i>", i < count   used_at N: when the slot last let a start
                                                     through (epoch seconds, the worker's clock)
    pk = "slot#<job>#<key>"  sk = "<i>", i < limit   holder S (the delivery's SQS message id),
                                                     expires_at N: its lease's end
    pk = "throttled"         sk = "<job>"            throttled N: deliveries held back (``ADD``)
    pk = "throttles#<id>"    sk = "-"                throttles N: receives of a FIFO message
                                                     that were throttles (written by :mod:`.flow`)

(``<job>#<key>`` is :func:`~glasswork.jobs.message.scoped_key`; a ``pk`` over 1,024 bytes is
its SHA-256.)

* **Rate** (``rate_limit="N/s"``): N start slots per job, each usable once per window. A
  start takes a slot by a conditional write, ``attribute_not_exists(pk) OR used_at <=
  :now - window``, so two writers can never take one slot within a window, and since each
  slot holds one start per window, no window of that length holds more than N starts: a
  sliding log of the last N starts, spread over N items so that concurrent writers pick
  different slots instead of racing for one item (a single item with a version number
  would make every writer but one retry). The ``Query`` that reads the slots first only
  says which to try: correctness rests on the condition, checked by DynamoDB on the item
  as it is.
* **Concurrency** (``concurrency_limit=K``): K slot items per ``(job, key)``, each taken by
  a conditional put, ``attribute_not_exists(pk) OR expires_at <= :now``, holding the
  delivery's message id and its lease's end; released (a ``DeleteItem`` conditional on the
  holder) when the run ends, and extended with the lease by the long-running worker. A
  worker that dies leaves its slots to lapse with their leases.

Both conditions compare times of the writer's own clock with times other workers wrote: the
limits hold to within the clocks' disagreement (``docs/limits.md``).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ...aws.errors import CONDITION_FAILED, error_code
from ...aws.tables import dynamodb_client, ensure_table
from ...errors import ConfigurationError
from ...limits import SLOT_RETRY, RateLimit
from ...message import scoped_key

#: The TTL attribute of the table.
TTL_ATTRIBUTE = "expires_at"
#: How long a rate slot's item outlives its window (TTL then removes a retired job's items).
RATE_ITEM_TTL = 86_400.0
#: The partition key of the throttle counters.
THROTTLED_PK = "throttled"
_MAX_KEY_BYTES = 1024

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class HeldSlot:
    """A concurrency slot a delivery holds: its item's key, the holder (the message id) and
    the job id of the run it is for (what the run's end releases)."""

    pk: str
    sk: str
    holder: str
    job_id: str | None


def _pk(prefix: str, name: str) -> str:
    pk = f"{prefix}#{name}"
    if len(pk.encode("utf-8")) > _MAX_KEY_BYTES:
        return f"{prefix}#sha256:{hashlib.sha256(name.encode('utf-8')).hexdigest()}"
    return pk


class LimitsTable:
    """The limits table ``table_name`` on the DynamoDB client ``client()`` (see the module
    docstring); times from ``clock``."""

    def __init__(self, table_name: str, client: Callable[[], Any], clock: Clock = time.time):
        self.table_name = table_name
        self._client = client
        self.clock = clock
        self._lock = threading.Lock()
        #: The slots this process's deliveries hold, by message id.
        self.held: dict[str, HeldSlot] = {}

    # -- starts --------------------------------------------------------------------------

    def take_start(self, job_name: str, rate: RateLimit) -> float | None:
        """Count a start of ``job_name`` against ``rate``: None when taken, else the seconds
        until the oldest start of the full window leaves it."""
        pk = _pk("rate", job_name)
        client = self._client()
        # First a slot picked at random, unread: free, as most are while the rate is not
        # reached, that is the whole start (one request).
        if self._take_start(client, pk, random.randrange(rate.count), rate):
            return None
        while True:
            now = self.clock()
            cutoff = now - rate.window
            used = {
                int(sk): float(item["used_at"]["N"])
                for sk, item in self._slots(client, pk, rate.count)
                if "used_at" in item
            }
            free = _free(used, rate.count, cutoff)
            if not free:
                return max(0.001, min(used.values()) + rate.window - now)
            if any(self._take_start(client, pk, i, rate) for i in free):
                return None
            # Every slot we saw free was taken meanwhile: read them again.

    def _take_start(self, client: Any, pk: str, i: int, rate: RateLimit) -> bool:
        """Take rate slot ``i`` now, if its last start has left the window."""
        now = self.clock()
        return self._put(
            client,
            {
                "pk": {"S": pk},
                "sk": {"S": str(i)},
                "used_at": {"N": repr(now)},
                TTL_ATTRIBUTE: {"N": str(int(now + rate.window + RATE_ITEM_TTL))},
            },
            "attribute_not_exists(pk) OR used_at <= :cutoff",
            {":cutoff": {"N": repr(now - rate.window)}},
        )

    # -- concurrency slots -----------------------------------------------------------------

    def take_slot(
        self,
        job_name: str,
        key: str | None,
        limit: int,
        holder: str,
        job_id: str | None,
        expires_at: float,
    ) -> HeldSlot | None:
        """One of ``limit`` slots of ``(job_name, key)`` for the delivery ``holder`` until
        ``expires_at`` (its lease's end); None when all are held."""
        pk = _pk("slot", scoped_key(job_name, key or ""))
        client = self._client()
        # First a slot picked at random, unread (one request when it is free).
        slot = self._take_slot(client, pk, random.randrange(limit), holder, job_id, expires_at)
        if slot is not None:
            return slot
        while True:
            now = self.clock()
            taken = {
                int(sk): float(item[TTL_ATTRIBUTE]["N"])
                for sk, item in self._slots(client, pk, limit)
                if TTL_ATTRIBUTE in item
            }
            free = _free(taken, limit, now)
            if not free:
                return None
            for i in free:
                slot = self._take_slot(client, pk, i, holder, job_id, expires_at)
                if slot is not None:
                    return slot
            # Every slot we saw free was taken meanwhile: read them again.

    def _take_slot(
        self, client: Any, pk: str, i: int, holder: str, job_id: str | None, expires_at: float
    ) -> HeldSlot | None:
        """Take concurrency slot ``i``, if no lease holds it."""
        if not self._put(
            client,
            {
                "pk": {"S": pk},
                "sk": {"S": str(i)},
                "holder": {"S": holder},
                TTL_ATTRIBUTE: {"N": repr(expires_at)},
            },
            f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} <= :now",
            {":now": {"N": repr(self.clock())}},
        ):
            return None
        slot = HeldSlot(pk, str(i), holder, job_id)
        with self._lock:
            self.held[holder] = slot
        return slot

    def release(self, slot: HeldSlot) -> None:
        """Free ``slot`` (left alone when another delivery holds it by now)."""
        with self._lock:
            if self.held.get(slot.holder) is slot:
                del self.held[slot.holder]
        try:
            self._client().delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": slot.pk}, "sk": {"S": slot.sk}},
                ConditionExpression="holder = :holder",
                ExpressionAttributeValues={":holder": {"S": slot.holder}},
            )
        except ClientError as exc:
            if error_code(exc) != CONDITION_FAILED:
                raise

    def release_holders(self, holders: Iterable[str | None]) -> None:
        """Free the slots held by these deliveries (message ids), if any."""
        if not self.held:
            return
        with self._lock:
            slots = [self.held.get(h) for h in holders if h is not None]
        for slot in slots:
            if slot is not None:
                self.release(slot)

    def release_job(self, job_id: str | None) -> None:
        """Free the slots held by the runs of ``job_id`` in this process."""
        with self._lock:
            slots = [s for s in self.held.values() if s.job_id == job_id]
        for slot in slots:
            self.release(slot)

    def extend(self, holders: Iterable[str | None], until: float) -> None:
        """Keep the slots of these deliveries until ``until`` (their leases were renewed);
        a slot already taken over is left alone."""
        if not self.held:
            return
        with self._lock:
            slots = [s for h in holders if h is not None and (s := self.held.get(h)) is not None]
        client = self._client()
        for slot in slots:
            try:
                client.update_item(
                    TableName=self.table_name,
                    Key={"pk": {"S": slot.pk}, "sk": {"S": slot.sk}},
                    UpdateExpression=f"SET {TTL_ATTRIBUTE} = :until",
                    ConditionExpression="holder = :holder",
                    ExpressionAttributeValues={
                        ":until": {"N": repr(until)},
                        ":holder": {"S": slot.holder},
                    },
                )
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise

    # -- throttle counts ---------------------------------------------------------------------

    def count_throttle(self, job_name: str) -> None:
        """Add one to the deliveries of ``job_name`` held back (an atomic ``ADD``)."""
        self._client().update_item(
            TableName=self.table_name,
            Key={"pk": {"S": THROTTLED_PK}, "sk": {"S": job_name}},
            UpdateExpression="ADD throttled :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    def throttle_counts(self) -> dict[str, int]:
        """Job name -> deliveries held back, across every worker on the table."""
        counts: dict[str, int] = {}
        for sk, item in self._query(self._client(), THROTTLED_PK, consistent=False):
            counts[sk] = int(item["throttled"]["N"])
        return counts

    # -- requests --------------------------------------------------------------------------

    def _slots(self, client: Any, pk: str, count: int) -> Iterable[tuple[str, Mapping[str, Any]]]:
        """The slot items of ``pk`` numbered below ``count`` (items of a larger limit that
        was lowered since are not slots any more)."""
        for sk, item in self._query(client, pk, consistent=True):
            if sk.isdigit() and int(sk) < count:
                yield sk, item

    def _query(
        self, client: Any, pk: str, *, consistent: bool
    ) -> Iterable[tuple[str, Mapping[str, Any]]]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": consistent,
        }
        while True:
            try:
                response = client.query(**request)
            except ClientError as exc:
                raise self._explained(exc) from exc
            for item in response.get("Items", []):
                yield item["sk"]["S"], item
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def _put(
        self, client: Any, item: dict[str, Any], condition: str, values: dict[str, Any]
    ) -> bool:
        """A conditional ``PutItem``: False when the condition failed."""
        try:
            client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise self._explained(exc) from exc
        return True

    def _explained(self, exc: ClientError) -> Exception:
        """A missing table as what to do about it; any other error as it is."""
        if error_code(exc) != "ResourceNotFoundException":
            same: Exception = exc
            return same
        return ConfigurationError(
            f"the limits table {self.table_name!r} does not exist (limits_table): create it "
            "with glasswork.jobs.drivers.sqs.create_limits_table, or in CloudFormation as "
            "docs/sqs.md shows"
        )


def _free(times: dict[int, float], count: int, lapsed_by: float) -> list[int]:
    """The slots to try, in random order: those whose time is ``lapsed_by`` or earlier,
    and one never written (found without walking all ``count``: limits may be large)."""
    free = [i for i, t in times.items() if t <= lapsed_by]
    random.shuffle(free)
    if len(times) < count:
        start = random.randrange(count)
        free.append(next(i % count for i in range(start, start + count) if i % count not in times))
    return free


def slot_wait() -> float:
    """Seconds a delivery waits for a concurrency slot before it asks again."""
    return SLOT_RETRY * (1 + random.random() / 2)


def create_limits_table(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
) -> str:
    """Create the limits table (on-demand billing, string keys ``pk`` and ``sk``, TTL on
    ``expires_at``) if it does not exist; returns its ARN. The same schema in
    CloudFormation is in ``docs/sqs.md``."""
    client = client or dynamodb_client(region, endpoint_url)
    return ensure_table(client, table_name, ("pk", "sk"), TTL_ATTRIBUTE, wait=wait)
