"""The SQS driver's :class:`~glasswork.jobs.drivers.contract.FlowLimits`: a limited delivery
takes its concurrency slot and its start from the limits table (:mod:`.limits`), or is put
back without spending an attempt.

Putting back on SQS: ``ApproximateReceiveCount``, where attempts come from, grows with every
receive, and the queue's redrive policy moves a message after ``maxReceiveCount`` receives.
Changing the visibility of a throttled delivery would count it both ways, so:

* **Standard queues**: a copy of the body is sent with ``DelaySeconds`` (the wait, rounded up
  to whole seconds, at most SQS's 15 minutes: a longer wait comes back, is asked again and
  sent on for the rest) and the attempts spent so far in the ``GlassworkAttempts`` message
  attribute, then the original is deleted. The copy starts a fresh receive count, and its
  deliveries count ``GlassworkAttempts`` + ``ApproximateReceiveCount``. Sent before the
  delete: a failure between the two leaves both (delivery is at least once), never neither.
* **FIFO queues** take no per-message delay, and a copy would join the back of its group;
  so the delivery's visibility is set to the wait instead (SQS delivers nothing else of its
  group meanwhile: the group's order holds) and the throttle is counted on an item of the
  limits table (``pk = "throttles#<message id>"``), which the next delivery subtracts from
  its receive count. When the receive count comes within one of the redrive policy's
  ``maxReceiveCount``, the copy is sent instead, to the back of its group, with a new
  deduplication id: only then can a throttled FIFO job run after the group's later jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from ...execution import CallNext, JobRun, Outcome
from ...limits import JobLimits
from ...message import identify
from ..records import ReceivedMessage
from .attempts import ATTEMPTS_ATTRIBUTE
from .clients import Clients
from .consuming import SQSConsumer
from .fifo import fifo_id
from .limits import TTL_ATTRIBUTE, LimitsTable, slot_wait
from .queues import MAX_SQS_DELAY_SECONDS
from .status import StatusTable

logger = logging.getLogger("glasswork.jobs")

#: How long a FIFO message's throttle count is kept (SQS's longest retention).
THROTTLES_TTL = 14 * 86_400
#: A slot lasts this share of the visibility timeout past its start: a delivery's lease
#: ends between two and three thirds of it from any moment the worker renews it on time.
SLOT_SHARE = 2 / 3


class SQSFlow:
    """Acquire for :class:`~glasswork.jobs.SQSQueueDriver` (see the module docstring)."""

    def __init__(
        self,
        table: LimitsTable,
        consumer: SQSConsumer,
        clients: Clients,
        statuses: StatusTable | None = None,
    ) -> None:
        self.table = table
        self.consumer = consumer
        self.clients = clients
        self.statuses = statuses
        self._lock = threading.Lock()
        self._max_receives: dict[str, int | None] = {}

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
    ) -> float | None:
        """See :meth:`~glasswork.jobs.drivers.contract.FlowLimits.acquire`."""
        fifo = self.consumer.url_of(received).endswith(".fifo")
        slot = None
        if limits.concurrency is not None:
            holder = received.message_id or str(received.receipt)
            _, job_id, _ = identify(received.body)
            lease = self.consumer.visibility_timeout * SLOT_SHARE
            slot = self.table.take_slot(
                job_name, key, limits.concurrency, holder, job_id, time.time() + lease
            )
            if slot is None:
                held_back = slot_wait()
                self._put_back(received, job_name, held_back, fifo)
                return held_back
        if limits.rate is not None:
            wait = self.table.take_start(job_name, limits.rate)
            if wait is not None:
                if slot is not None:
                    self.table.release(slot)
                self._put_back(received, job_name, wait, fifo)
                return wait
        if fifo and received.attempt > 1:
            received.attempt = max(1, received.attempt - self._fifo_throttles(received))
        return None

    # -- putting back ------------------------------------------------------------------------

    def _put_back(self, received: ReceivedMessage, job_name: str, wait: float, fifo: bool) -> None:
        if self.statuses is not None:  # the worker recorded its start: take it back
            try:
                self.statuses.record_held_back(received)
            except Exception:
                logger.warning(
                    "could not record message %s as held back in the status table",
                    received.message_id,
                    exc_info=True,
                )
        delay = min(MAX_SQS_DELAY_SECONDS, max(1, math.ceil(wait)))
        if fifo:
            receives = _receive_count(received)
            limit = self._max_receive_count(self.consumer.url_of(received))
            if limit is None or receives + 1 < limit:
                self._count_fifo_throttle(received)
                self.consumer.nack(received, delay)
                self.table.count_throttle(job_name)
                return
            attempt = received.attempt - self._fifo_throttles(received)
            self._resend(received, 0, max(1, attempt))
        else:
            self._resend(received, delay, received.attempt)
        self.table.count_throttle(job_name)

    def _resend(self, received: ReceivedMessage, delay: int, attempt: int) -> None:
        """A copy of ``received`` (whose delivery was attempt ``attempt``, not spent) sent
        ``delay`` seconds out, then the original deleted."""
        url = self.consumer.url_of(received)
        params: dict[str, Any] = {
            "QueueUrl": url,
            "MessageBody": received.body,
            "MessageAttributes": {
                ATTEMPTS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(attempt - 1)}
            },
        }
        if url.endswith(".fifo"):
            group = received.attributes.get("MessageGroupId")
            if not isinstance(group, str) or not group:
                group = identify(received.body)[0] or "default"
            params["MessageGroupId"] = fifo_id(group)
            params["MessageDeduplicationId"] = fifo_id(
                f"{received.message_id}:{_receive_count(received)}:throttled"
            )
        else:
            params["DelaySeconds"] = delay
        self.clients.sqs.send_message(**params)
        self.consumer.ack(received)

    # -- FIFO throttle counts ------------------------------------------------------------------

    def _count_fifo_throttle(self, received: ReceivedMessage) -> None:
        self.clients.dynamodb.update_item(
            TableName=self.table.table_name,
            Key={"pk": {"S": f"throttles#{received.message_id}"}, "sk": {"S": "-"}},
            UpdateExpression=f"ADD throttles :one SET {TTL_ATTRIBUTE} = :ttl",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":ttl": {"N": str(int(time.time()) + THROTTLES_TTL)},
            },
        )

    def _fifo_throttles(self, received: ReceivedMessage) -> int:
        """How many receives of this FIFO message were throttles (0 when none was)."""
        item = self.clients.dynamodb.get_item(
            TableName=self.table.table_name,
            Key={"pk": {"S": f"throttles#{received.message_id}"}, "sk": {"S": "-"}},
            ConsistentRead=True,
        ).get("Item")
        return int(item["throttles"]["N"]) if item else 0

    def _max_receive_count(self, url: str) -> int | None:
        """The ``maxReceiveCount`` of the queue's redrive policy (None: it has none, or it
        cannot be read), read once per queue."""
        with self._lock:
            if url in self._max_receives:
                return self._max_receives[url]
        limit: int | None = None
        try:
            attributes = self.clients.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
            policy = attributes.get("RedrivePolicy")
            if policy:
                limit = int(json.loads(policy)["maxReceiveCount"])
        except (ClientError, ValueError, KeyError, TypeError):
            # Unknown: treat every FIFO throttle as close to the limit (a copy, never the DLQ).
            logger.warning("could not read the redrive policy of %s", url, exc_info=True)
            limit = 1
        with self._lock:
            self._max_receives[url] = limit
        return limit


class ReleaseSlots:
    """The around-run step that frees a limited run's concurrency slot when the run ends,
    on every runtime (the Lambda handler settles a finished record through no driver
    call); the settling calls free what is left, the lease's end what a dead worker held."""

    __slots__ = ("table",)

    def __init__(self, table: LimitsTable) -> None:
        self.table = table

    def __repr__(self) -> str:
        return f"ReleaseSlots({self.table.table_name!r})"

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        outcome = await call_next()
        if not self.table.held:  # no slot held in this process: nothing to free
            return outcome
        job_id = run.ctx._fields.get("job_id")
        try:
            if asyncio._get_running_loop() is None:  # the Lambda worker: no loop to keep free
                self.table.release_job(job_id)
            else:
                await asyncio.to_thread(self.table.release_job, job_id)
        except Exception:
            run.ctx.logger.warning(
                "could not free the concurrency slot of job %s; it lapses with its lease",
                job_id,
                exc_info=True,
            )
        return outcome


def _receive_count(received: ReceivedMessage) -> int:
    try:
        return int(received.attributes.get("ApproximateReceiveCount", received.attempt))
    except (TypeError, ValueError):
        return received.attempt
