"""Where each enqueue goes on SQS: its unique key taken first (with a unique-key table), its
status written (with a status table), then sent now, sent with SQS's own delay, or written
to the scheduler table, as the delay allows; a send that fails gives the key back and
deletes the status. Batches go in ``SendMessageBatch`` requests. A non-zero priority is
refused: SQS queues have no order. A debounced enqueue (:meth:`Producer.debounce`) takes its
key by superseding (see :mod:`.unique`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ...debounce import log_superseded, superseded_reason
from ...errors import ConfigurationError
from ...message import JobMessage
from ..records import EnqueueBatchError, EnqueueResult, FailedEnqueue
from .delays import DelayTable
from .problems import Settings
from .queues import QueueDirectory
from .sending import Sender
from .status import EnqueueStatuses
from .unique import UniqueKeys

logger = logging.getLogger("glasswork.jobs")


class Producer:
    """The enqueues of one driver: its queues (``directory``), ``sender``, scheduler table
    (``delays``) and unique keys (``unique_keys``, None without a unique-key table)."""

    def __init__(
        self,
        *,
        directory: QueueDirectory,
        sender: Sender,
        delays: DelayTable,
        unique_keys: UniqueKeys | None,
        statuses: EnqueueStatuses | None,
        settings: Settings,
    ) -> None:
        self.directory = directory
        self.sender = sender
        self.delays = delays
        self.unique_keys = unique_keys
        self.statuses = statuses
        self.settings = settings
        self._warned_unique = False

    def route(self, message: JobMessage, delay: float, due: float) -> EnqueueResult:
        """Take the unique key, then send now, with SQS's own delay, or through the
        scheduler table, as ``delay`` (seconds from now; ``due`` is the same moment as an
        epoch time) allows. A failed send gives the key back and deletes the status."""
        refuse_priority([message])
        taken = self.claim([message], delay)
        written: list[str] = []
        try:
            if self.statuses is not None:
                written = self.statuses.enqueued([message], due if delay > 0 else None)
            return self._send(message, delay, due)
        except BaseException:
            self.unclaim(taken)
            self.forget(written)
            raise

    def debounce(self, message: JobMessage, window: float) -> EnqueueResult:
        """A debounced enqueue: take the key, superseding the debounced job holding it (one
        ``UpdateItem``), write the status, send the message delayed by ``window`` (SQS's
        delay, or the scheduler table past 15 minutes); then end the superseded job's status
        (a tombstone its message meets). A failed send puts the key back as it was."""
        refuse_priority([message])
        keys = self.unique_keys
        assert keys is not None, "the driver offers debounce only with a unique-key table"
        due = time.time() + window
        old = keys.supersede(message, window)
        written: list[str] = []
        try:
            if self.statuses is not None:
                written = self.statuses.enqueued([message], due if window > 0 else None)
            result = self._send(message, window, due)
        except BaseException:
            keys.restore(message, old)
            self.forget(written)
            raise
        superseded = keys.superseded(message, old)
        if superseded is not None:
            if self.statuses is not None:
                self.statuses.supersede(superseded, superseded_reason(message.job_id))
            log_superseded(message.job_name, message.unique_key, superseded, message.job_id)
        return result

    def _send(self, message: JobMessage, delay: float, due: float) -> EnqueueResult:
        if delay <= 0:
            return self.sender.send(message, 0)
        if self.directory.accepts_delay(message.queue, delay):
            return self.sender.send(message, delay)
        return self.delays.schedule(message, due)

    def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float
    ) -> list[EnqueueResult]:
        """See :meth:`SQSQueueDriver.enqueue_many <glasswork.jobs.SQSQueueDriver.enqueue_many>`."""
        refuse_priority(messages)
        results: list[EnqueueResult | None] = [None] * len(messages)
        batched, scheduled = self.plan_batch(messages, delay_seconds)
        taken = self.claim(messages, delay_seconds)
        written: list[str] = []
        try:
            if self.statuses is not None:
                due = time.time() + delay_seconds if delay_seconds > 0 else None
                written = self.statuses.enqueued(messages, due)
            failed = self._send_planned(messages, delay_seconds, batched, scheduled, results)
        except BaseException:
            self.unclaim(taken)
            sent_ids = {r.job_id for r in results if r is not None}
            self.forget([job_id for job_id in written if job_id not in sent_ids])
            raise
        sent = [r for r in results if r is not None]
        if failed:
            failed_ids = {f.job_id for f in failed}
            self.unclaim([m for m in taken if m.job_id in failed_ids])
            self.forget([job_id for job_id in written if job_id in failed_ids])
            raise EnqueueBatchError(failed, sent, 1 + max(0, self.sender.batch_retries))
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
            if delay_seconds > 0 and not self.directory.accepts_delay(message.queue, delay_seconds):
                scheduled.append(index)
            else:
                batched.setdefault(self.directory.queue_url(message.queue), []).append(index)
        return batched, scheduled

    def _send_planned(
        self,
        messages: Sequence[JobMessage],
        delay_seconds: float,
        batched: dict[str, list[int]],
        scheduled: list[int],
        results: list[EnqueueResult | None],
    ) -> list[FailedEnqueue]:
        failed = self.delays.schedule_many(
            messages, scheduled, time.time() + delay_seconds, results
        )
        for url, indexes in batched.items():
            for chunk in self.sender.chunks(url, messages, indexes):
                failed.extend(self.sender.send_chunk(url, messages, chunk, delay_seconds, results))
        return failed

    def forget(self, written: list[str]) -> None:
        """Delete the statuses written for jobs that were not sent."""
        if written and self.statuses is not None:
            self.statuses.forget(written)

    # -- unique keys -------------------------------------------------------------------------

    def claim(self, messages: Sequence[JobMessage], delay: float) -> list[JobMessage]:
        """Take the unique keys of ``messages`` (with a unique-key table); see
        :mod:`glasswork.jobs.drivers.sqs.unique`. A debounced job took its key when it was
        enqueued (:meth:`debounce`): the scheduler sending it on takes none (one superseded
        meanwhile is sent all the same, and not run when it arrives)."""
        if self.unique_keys is None:
            self.warn_unique_ignored(messages)
            return []
        return self.unique_keys.claim([m for m in messages if m.debounce is None], delay)

    def unclaim(self, taken: list[JobMessage]) -> None:
        """Give back the keys of ``taken`` (a failure is logged: they lapse by themselves)."""
        if taken and self.unique_keys is not None:
            try:
                self.unique_keys.release(taken)
            except Exception:
                logger.warning("could not give back %d unique key(s)", len(taken), exc_info=True)

    def warn_unique_ignored(self, messages: Sequence[JobMessage]) -> None:
        """Say once that unique keys are not enforced without a unique-key table."""
        if self._warned_unique or all(m.unique_key is None for m in messages):
            return
        self._warned_unique = True
        logger.warning(
            "job %r has a unique key, which SQS does not enforce (standard queues ignore it; "
            "FIFO queues drop a repeat within 5 minutes, silently): %s for DuplicateJobError",
            next(m.job_name for m in messages if m.unique_key is not None),
            self.settings.add("unique_table", "<DynamoDB table>"),
        )


def refuse_priority(messages: Sequence[JobMessage]) -> None:
    """SQS hands a queue's messages out in no order, so a priority cannot be kept: a
    non-zero one is a :class:`ConfigurationError` naming what to do instead."""
    for message in messages:
        if message.priority:
            raise ConfigurationError(
                f"job {message.job_name!r} has priority {message.priority}, but SQS queues "
                "have no order, so the SQS driver cannot run it sooner: send urgent jobs to "
                "a separate queue with its own concurrency (its own Lambda function or "
                "workers) instead; nothing was sent"
            )
