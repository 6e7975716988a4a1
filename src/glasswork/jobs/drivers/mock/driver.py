"""MockQueueDriver: an in-memory driver for users' tests, with a synchronous ``drain``."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...errors import BatchRetryError, DuplicateJobError
from ...idempotency.memory import MemoryIdempotencyStore
from ...message import JobMessage
from ...testing import sqs_record
from ..contract import Consuming, IdempotencyProvider, QueueDriver
from ..records import EnqueueResult, ReceivedMessage

if TYPE_CHECKING:
    from ....modules import Module


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    """One enqueue the mock saw: the message, its delay and when it becomes due."""

    message: JobMessage
    delay_seconds: float
    run_at: datetime | None
    result: EnqueueResult

    @property
    def job_name(self) -> str:
        return self.message.job_name

    @property
    def payload(self) -> Any:
        return self.message.payload


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A message the worker dead-lettered, with the reason and the formatted traceback of
    the failure (None for a deliberate job error)."""

    body: str
    reason: str
    queue: str | None
    traceback: str | None = None

    @property
    def message(self) -> JobMessage | None:
        """The decoded message, or None when the body was malformed."""
        try:
            return JobMessage.from_json(self.body)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What :meth:`MockQueueDriver.drain` ran: deliveries made, how many were reported for
    retry, and how many messages went to the dead letter."""

    deliveries: int
    retried: int
    dead_lettered: int


@dataclass(slots=True)
class _Pending:
    message_id: str
    body: str
    message: JobMessage
    due: float
    attempt: int = 0
    leased_by: str | None = None
    order: int = 0


class MockQueueDriver(QueueDriver, Consuming, IdempotencyProvider):
    """In-memory queue for tests: records every enqueue and can run them all.

    * ``driver.jobs``: messages enqueued (``.job_name``, ``.payload``);
    * ``driver.enqueued``: records with ``.message``, ``.delay_seconds`` and ``.run_at``;
    * ``driver.dead_letters``: what workers dead-lettered, with reasons and tracebacks;
    * ``driver.drain(AppModule)``: run everything through the real Lambda worker path;
    * a second pending job with the same unique key raises :class:`DuplicateJobError`.
    """

    name = "mock"

    def __init__(self) -> None:
        self.enqueued: list[EnqueuedJob] = []
        self.dead_letters: list[DeadLetterEntry] = []
        self._pending: dict[str, _Pending] = {}
        self._unique: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._idempotency = MemoryIdempotencyStore()

    def __repr__(self) -> str:
        return (
            f"MockQueueDriver(pending={len(self._pending)}, dead_letters={len(self.dead_letters)})"
        )

    @property
    def jobs(self) -> list[JobMessage]:
        """Every message enqueued so far, in order."""
        return [e.message for e in self.enqueued]

    @property
    def pending(self) -> list[JobMessage]:
        """Messages not yet finished (waiting, delayed or being retried)."""
        with self._lock:
            return [p.message for p in sorted(self._pending.values(), key=lambda p: p.order)]

    def clear(self) -> None:
        """Forget everything: enqueued records, pending messages, dead letters, unique keys
        and idempotency keys."""
        with self._lock:
            self.enqueued.clear()
            self.dead_letters.clear()
            self._pending.clear()
            self._unique.clear()
            self._idempotency.clear()

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self.enqueue_many([message])[0]

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.enqueue_many([message], delay_seconds)[0]

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        with self._lock:
            # Check every unique key before storing any, so a refused batch stores nothing.
            claimed: dict[tuple[str, str], str] = {}
            for m in messages:
                if m.unique_key is None:
                    continue
                key = (m.job_name, m.unique_key)
                holder = self._unique.get(key) or claimed.get(key)
                if holder is not None:
                    raise DuplicateJobError(m.job_name, m.unique_key, holder)
                claimed[key] = m.job_id
            self._unique.update(claimed)
            now = time.time()
            results = []
            for m in messages:
                order = next(self._ids)
                message_id = f"mock-{order}"
                run_at = (
                    datetime.now(UTC) + timedelta(seconds=delay_seconds)
                    if delay_seconds > 0
                    else None
                )
                result = EnqueueResult(message_id, m.job_id, m.queue, run_at)
                self._pending[message_id] = _Pending(
                    message_id, m.encode(), m, now + delay_seconds, order=order
                )
                self.enqueued.append(EnqueuedJob(m, delay_seconds, run_at, result))
                results.append(result)
            return results

    # -- consuming ---------------------------------------------------------------------

    def receive(
        self,
        queues: Sequence[str] | None = None,
        max_messages: int = 10,
        wait_seconds: float = 0.0,
        *,
        include_delayed: bool = False,
    ) -> list[ReceivedMessage]:
        """Lease up to ``max_messages`` due messages (all pending ones with
        ``include_delayed``), oldest first."""
        with self._lock:
            now = time.time()
            ready = sorted(
                (
                    p
                    for p in self._pending.values()
                    if p.leased_by is None
                    and (include_delayed or p.due <= now)
                    and (queues is None or p.message.queue in queues)
                ),
                key=lambda p: (p.due, p.order),
            )[:max_messages]
            received = []
            for p in ready:
                p.attempt += 1
                p.leased_by = f"{p.message_id}#{p.attempt}"
                received.append(
                    ReceivedMessage(p.body, p.leased_by, p.attempt, p.message.queue, p.message_id)
                )
            return received

    def ack(self, received: ReceivedMessage) -> None:
        with self._lock:
            pending = self._lease(received)
            if pending is None:
                return
            del self._pending[pending.message_id]
            m = pending.message
            if m.unique_key is not None:
                self._unique.pop((m.job_name, m.unique_key), None)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        with self._lock:
            pending = self._lease(received)
            if pending is not None:
                pending.leased_by = None
                pending.due = time.time() + delay_seconds

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        with self._lock:
            self.dead_letters.append(DeadLetterEntry(body, reason, queue, traceback))
        return True

    def idempotency_store(self) -> MemoryIdempotencyStore:
        """Idempotency keys in memory, kept with this driver (``clear()`` forgets them)."""
        return self._idempotency

    def _lease(self, received: ReceivedMessage) -> _Pending | None:
        pending = self._pending.get(received.message_id)
        if pending is None or pending.leased_by != received.receipt:
            return None  # already acked or nacked, or a stale lease
        return pending

    # -- running -----------------------------------------------------------------------

    def drain(
        self,
        worker: Module | Callable[[dict[str, Any], Any], dict[str, Any]],
        *,
        include_delayed: bool = True,
        max_deliveries: int = 10_000,
    ) -> DrainResult:
        """Run every pending job, and those they enqueue, through the real Lambda path.

        ``worker`` is a module (a worker is bootstrapped on this driver) or a handler from
        ``bootstrap_worker``. Batches of up to 10 become SQS events; records the handler
        reports as failures are delivered again with a higher receive count, until each job
        is done, dead-lettered or discarded. Delays are skipped unless
        ``include_delayed=False``, which runs only what is due now.
        """
        from ....modules import Module
        from ...aws_lambda.handler import bootstrap_worker

        handler = (
            bootstrap_worker(module=worker, driver=self) if isinstance(worker, Module) else worker
        )
        deliveries = retried = 0
        dead_before = len(self.dead_letters)
        while batch := self.receive(max_messages=10, include_delayed=include_delayed):
            deliveries += len(batch)
            if deliveries > max_deliveries:
                for r in batch:
                    self.nack(r)
                raise RuntimeError(
                    f"drain stopped after {max_deliveries} deliveries: a job keeps failing "
                    "or enqueuing more jobs"
                )
            event = {
                "Records": [
                    sqs_record(
                        r.body,
                        message_id=r.message_id,
                        receipt_handle=str(r.receipt),
                        receive_count=r.attempt,
                        queue=r.queue,
                    )
                    for r in batch
                ]
            }
            try:
                response = handler(event, None)
            except BatchRetryError as exc:  # Lambda returns the batch (finished ones deleted)
                response = {"batchItemFailures": [{"itemIdentifier": i} for i in exc.retried]}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            for r in batch:
                if r.message_id in failed:
                    retried += 1
                    self.nack(r)  # no-op when the worker already nacked it with its backoff
                else:
                    self.ack(r)
        return DrainResult(deliveries, retried, len(self.dead_letters) - dead_before)
