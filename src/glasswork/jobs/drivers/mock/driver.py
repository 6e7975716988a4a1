"""MockQueueDriver: an in-memory driver for users' tests, with a synchronous ``drain``."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...debounce import log_superseded, superseded_reason
from ...errors import DuplicateJobError, MalformedMessageError
from ...idempotency.memory import MemoryIdempotencyStore
from ...limits import SLOT_RETRY, JobLimits
from ...message import JobMessage
from ...workflows.advancing import ends_of
from ..contract import (
    Consuming,
    Debounce,
    FlowLimits,
    IdempotencyProvider,
    QueueDriver,
    StatusStore,
)
from ..records import (
    DEFAULT_RESULT_TTL,
    EnqueueResult,
    FinalStatus,
    JobState,
    JobStatus,
    ReceivedMessage,
)
from .drain import DrainResult as DrainResult
from .drain import drain
from .fairness import fair_order, fair_queues, turned
from .status import EndedJobs, history_page
from .workflows import MemoryWorkflows

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


@dataclass(slots=True)
class _Pending:
    message_id: str
    body: str
    message: JobMessage
    due: float
    attempt: int = 0
    leased_by: str | None = None
    order: int = 0
    updated_at: datetime | None = None
    error: str | None = None
    traceback: str | None = None
    progress: float | None = None
    progress_note: str | None = None
    cancel_reason: str | None = None  # set while running: its worker is asked to stop
    slot: tuple[str, str] | None = None  # the concurrency slot this delivery holds

    def status(self, now: float) -> JobStatus:
        """The live status, from what the queue holds."""
        m = self.message
        state: JobState
        if self.leased_by is not None:
            state = "running"
        elif self.attempt:
            state = "retrying"
        else:
            state = "scheduled" if self.due > now else "pending"
        return JobStatus(
            m.job_id,
            m.job_name,
            m.queue,
            state,
            attempts=self.attempt,
            progress=self.progress,
            progress_note=self.progress_note,
            error=self.error,
            traceback=self.traceback,
            enqueued_at=m.enqueued_at,
            updated_at=self.updated_at or m.enqueued_at,
            priority=m.priority or 0,
        )

    def ended(self, final: FinalStatus) -> JobStatus:
        """The status of its job ended as ``final`` says."""
        m = self.message
        return JobStatus(
            m.job_id,
            m.job_name,
            m.queue,
            final.state,
            attempts=self.attempt,
            progress=final.progress if final.progress is not None else self.progress,
            progress_note=final.progress_note or self.progress_note,
            result=final.result,
            error=final.error,
            traceback=final.traceback,
            enqueued_at=m.enqueued_at,
            updated_at=datetime.now(UTC),
            priority=m.priority or 0,
        )

    @staticmethod
    def acked(received: ReceivedMessage) -> _Pending | None:
        """What an acknowledged delivery was, from its body (None: not a message)."""
        try:
            message = JobMessage.from_json(received.body)
        except (ValueError, MalformedMessageError):
            return None
        return _Pending(received.message_id, received.body, message, 0.0, received.attempt)


class MockQueueDriver(
    QueueDriver, Consuming, IdempotencyProvider, StatusStore, FlowLimits, Debounce, MemoryWorkflows
):
    """In-memory queue for tests: records every enqueue and can run them all.

    * ``driver.jobs``: messages enqueued (``.job_name``, ``.payload``);
    * ``driver.enqueued``: records with ``.message``, ``.delay_seconds`` and ``.run_at``;
    * ``driver.dead_letters``: what workers dead-lettered, with reasons and tracebacks;
    * ``driver.drain(AppModule)``: run everything through the real Lambda worker path;
    * a second pending job with the same unique key raises :class:`DuplicateJobError`;
      a debounced enqueue supersedes a debounced one (``enqueue(..., debounce=)``);
    * jobs' statuses and results, in memory for the life of the driver (ended ones for their
      ``result_ttl``); higher priorities are received first within a queue;
    * rate and concurrency limits, for a long-running worker on it (not :meth:`drain`, which
      runs jobs through the Lambda path: it refuses limited jobs);
    * fairness keys: a queue holding jobs with one is received round-robin across its keys
      (jobs without one are a group of their own), by :meth:`drain` and by workers alike.
    * workflows (chains, groups), on the same statements as the SQL drivers
      (:mod:`.workflows`).
    """

    name = "mock"
    claims_by_priority = True
    fairness = "round-robin"

    def __init__(self) -> None:
        self.enqueued: list[EnqueuedJob] = []
        self.dead_letters: list[DeadLetterEntry] = []
        self._pending: dict[str, _Pending] = {}
        self._by_job: dict[str, _Pending] = {}  # the live delivery of each job id
        self._ended = EndedJobs()
        self._unique: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._idempotency = MemoryIdempotencyStore()
        self._starts: dict[str, list[float]] = {}  # recent starts of rate-limited jobs
        # Jobs superseded while they ran: what their runs return is not their end.
        self._superseded: set[str] = set()
        self._cursors: dict[str, str] = {}  # each fair queue's last key served (fairness.py)
        self._throttled: Counter[str] = Counter()  # deliveries held back, per job

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
        """Forget everything: enqueued records, pending messages, dead letters, statuses,
        unique keys and idempotency keys."""
        with self._lock:
            self.enqueued.clear()
            self.dead_letters.clear()
            self._pending.clear()
            self._by_job.clear()
            self._ended.clear()
            self._unique.clear()
            self._idempotency.clear()
            self._starts.clear()
            self._superseded.clear()
            self._cursors.clear()
            self._throttled.clear()
            self.forget_workflows()

    # -- producing ---------------------------------------------------------------------

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self.enqueue_many([message])[0]

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return self.enqueue_many([message], delay_seconds)[0]

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        with self._lock:
            self._unique.update(_unique_keys(messages, self._unique))
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
                pending = _Pending(message_id, m.encode(), m, now + delay_seconds, order=order)
                self._pending[message_id] = self._by_job[m.job_id] = pending
                self.enqueued.append(EnqueuedJob(m, delay_seconds, run_at, result))
                results.append(result)
            return results

    def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """Enqueue ``message`` due ``window_seconds`` from now, superseding the debounced
        job that holds its unique key (it ends cancelled; a delivery of it under way can
        no longer settle it), under the driver's lock."""
        assert message.unique_key is not None, "a debounced message has a unique key"
        with self._lock:
            holder = self._unique.get((message.job_name, message.unique_key))
            held = self._by_job.get(holder) if holder is not None else None
            if held is not None and held.message.unique_key == message.unique_key:
                if held.message.debounce is None:
                    raise DuplicateJobError(message.job_name, message.unique_key, holder)
                running = held.leased_by is not None
                self._remove(held)
                reason = superseded_reason(message.job_id, running=running)
                self._ended.keep(
                    held.ended(FinalStatus("cancelled", error=reason)), DEFAULT_RESULT_TTL
                )
                if running:
                    self._superseded.add(held.message.job_id)
                log_superseded(
                    message.job_name, message.unique_key, held.message.job_id, message.job_id
                )
            return self.enqueue_many([message], window_seconds)[0]

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
        ``include_delayed``), the highest priority first, then the oldest; in a queue with
        fairness keys, round-robin across its keys (priorities order each key's own)."""
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
                key=_plain_order,
            )
            fair = fair_queues(ready)
            if fair:  # round-robin across the keys of the queues that have them
                ready = fair_order(ready, fair, self._cursors)[:max_messages]
                turned(ready, fair, self._cursors)
            else:
                ready = ready[:max_messages]
            received = []
            for p in ready:
                p.slot = None
                p.attempt += 1
                p.leased_by = f"{p.message_id}#{p.attempt}"
                p.updated_at = datetime.now(UTC)
                received.append(
                    ReceivedMessage(p.body, p.leased_by, p.attempt, p.message.queue, p.message_id)
                )
            return received

    def ack(self, received: ReceivedMessage) -> None:
        with self._lock:
            pending = self._lease(received)
            if pending is not None:
                self._remove(pending)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        with self._lock:
            pending = self._lease(received)
            if pending is None:
                return
            if pending.cancel_reason is not None:  # asked to stop, then released: it ends here
                self._cancel_now(pending, pending.cancel_reason)
                return
            pending.leased_by = None
            pending.due = time.time() + delay_seconds
            pending.updated_at = datetime.now(UTC)

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
    ) -> float | None:
        """Start a limited job (a slot held while it is leased; rate: a sliding log of
        starts), or put it back until it may, its attempt given back."""
        with self._lock:
            pending = self._lease(received)
            if pending is None:
                return 0.0  # no longer held: it must not start
            now = time.time()
            wait: float | None = None
            slot = (job_name, key or "")
            if limits.concurrency is not None:
                held = sum(
                    1
                    for p in self._pending.values()
                    if p.slot == slot and p.leased_by is not None and p is not pending
                )
                if held >= limits.concurrency:
                    wait = SLOT_RETRY * (1 + random.random() / 2)
            rate = limits.rate
            if wait is None and rate is not None:
                starts = [t for t in self._starts.get(job_name, ()) if t > now - rate.window]
                if len(starts) >= rate.count:
                    wait = max(0.001, starts[len(starts) - rate.count] + rate.window - now)
                else:
                    starts.append(now)
                self._starts[job_name] = starts
            if wait is None:
                pending.slot = slot if limits.concurrency is not None else None
                return None
            pending.leased_by = None
            pending.attempt -= 1
            pending.due = now + wait
            self._throttled[job_name] += 1
            return wait

    def throttle_counts(self) -> dict[str, int]:
        """Deliveries each job's limits held back (``clear()`` forgets them)."""
        with self._lock:
            return dict(self._throttled)

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        with self._lock:
            self.dead_letters.append(DeadLetterEntry(body, reason, queue, traceback))
            self.advance_dead(body, reason)
        return True

    def idempotency_store(self) -> MemoryIdempotencyStore:
        """Idempotency keys in memory, kept with this driver (``clear()`` forgets them)."""
        return self._idempotency

    def _lease(self, received: ReceivedMessage) -> _Pending | None:
        pending = self._pending.get(received.message_id)
        if pending is None or pending.leased_by != received.receipt:
            return None  # already acked or nacked, or a stale lease
        return pending

    def _remove(self, pending: _Pending) -> None:
        del self._pending[pending.message_id]
        m = pending.message
        if self._by_job.get(m.job_id) is pending:
            del self._by_job[m.job_id]
        if m.unique_key is not None:
            self._unique.pop((m.job_name, m.unique_key), None)

    # -- status (StatusStore) ----------------------------------------------------------

    def job_status(self, job_id: str) -> JobStatus | None:
        with self._lock:
            live = self._by_job.get(job_id)
            return live.status(time.time()) if live is not None else self._ended.get(job_id)

    def job_history(
        self,
        *,
        state: str | None = None,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[JobStatus]:
        with self._lock:
            now = time.time()
            live = sorted(self._by_job.values(), key=lambda p: p.order)
            statuses = [*self._ended.all(), *(p.status(now) for p in live)]
        return history_page(
            statuses, state=state, job_name=job_name, queue=queue, limit=limit, before=before
        )

    def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        with self._lock:
            pending = self._by_job.get(job_id)
            if pending is None:
                return False  # unknown, or ended
            if pending.leased_by is not None:
                pending.cancel_reason = reason  # its worker asks it to stop
                return True
            self._cancel_now(pending, reason)
            return True

    def _cancel_now(self, pending: _Pending, reason: str) -> None:
        self._remove(pending)
        self._ended.keep(pending.ended(FinalStatus("cancelled", error=reason)), DEFAULT_RESULT_TTL)
        self.cancel_workflow_step(pending.message.job_id, reason)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {
                job_id
                for job_id in job_ids
                if (p := self._by_job.get(job_id)) is not None and p.cancel_reason is not None
            }

    def record_start(self, received: ReceivedMessage) -> bool:
        with self._lock:
            pending = self._lease(received)
            if pending is None:
                if received.message_id in self._pending:
                    return False  # another delivery holds it now
                # Not held here: ended already (its end kept), or never enqueued through this
                # driver (a hand-made event in a test), which runs as any delivery does.
                ended = _Pending.acked(received)
                return ended is None or self._ended.get(ended.message.job_id) is None
            if pending.cancel_reason is not None:  # cancelled between receive and start
                self._cancel_now(pending, pending.cancel_reason)
                return False
            return True

    def record_retry(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        with self._lock:
            pending = self._lease(received)
            if pending is not None:
                pending.error, pending.traceback = error, traceback
                pending.updated_at = datetime.now(UTC)

    def record_progress(self, job_id: str, fraction: float, note: str | None) -> None:
        with self._lock:
            pending = self._by_job.get(job_id)
            if pending is not None:
                pending.progress, pending.progress_note = fraction, note
                pending.updated_at = datetime.now(UTC)

    def finish(self, received: ReceivedMessage, final: FinalStatus) -> None:
        self.finish_many([(received, final)])

    def finish_many(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> None:
        with self._lock:
            for received, final in finished:
                pending = self._lease(received)
                if pending is None:
                    # Acked already (a dead letter's ack may come first), or held by another
                    # delivery now: record the end only when no delivery of it is live.
                    pending = _Pending.acked(received)
                    if pending is None or pending.message.job_id in self._by_job:
                        continue
                    if pending.message.job_id in self._superseded and final.state != "dead":
                        continue  # superseded while it ran: only a dead letter is its end
                else:
                    self._remove(pending)
                self._ended.keep(pending.ended(final), final.keep_for)
            self.advance_workflows(ends_of(finished))

    def record_start_many(self, received: Sequence[ReceivedMessage]) -> list[bool]:
        return [self.record_start(r) for r in received]

    def record_ends(self, finished: Sequence[tuple[ReceivedMessage, FinalStatus]]) -> bool:
        # The drain deletes what the handler did not report: ending them here first is the
        # same (a later acknowledgement of an ended delivery is a no-op).
        self.finish_many(finished)
        return True

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
        return drain(self, handler, include_delayed=include_delayed, max_deliveries=max_deliveries)


def _plain_order(p: _Pending) -> tuple[int, float, int]:
    return (-(p.message.priority or 0), p.due, p.order)


def _unique_keys(
    messages: Sequence[JobMessage], held: dict[tuple[str, str], str]
) -> dict[tuple[str, str], str]:
    """The unique keys ``messages`` take, every one checked before any is taken (so a
    refused batch stores nothing): :class:`DuplicateJobError` for one ``held`` already."""
    claimed: dict[tuple[str, str], str] = {}
    for m in messages:
        if m.unique_key is None:
            continue
        key = (m.job_name, m.unique_key)
        holder = held.get(key) or claimed.get(key)
        if holder is not None:
            raise DuplicateJobError(m.job_name, m.unique_key, holder)
        claimed[key] = m.job_id
    return claimed
