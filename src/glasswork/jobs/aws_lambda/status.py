"""LambdaStatuses: the Lambda handler's side of a driver's status store, for drivers that
keep one (:class:`~glasswork.jobs.drivers.contract.StatusBatches`: SQS with a
``status_table``). The handler asks for the group once, at bootstrap; without it none of
this exists, and a batch costs what it always did.

* Before a batch runs, :meth:`start` records the start of every record at once
  (``record_start_many``: one round trip). A record the store refuses (its job was
  cancelled: a tombstone; or its end was recorded: a redelivery) does not run, and is not
  reported, so Lambda deletes it. When the store cannot be reached, nothing runs: every
  record is reported for retry (:class:`StatusUnavailable`), so no job runs without its
  start recorded, and none is lost.
* A run to be retried is recorded ``retrying`` with its error (``record_retry``) before its
  retry delay is set (:meth:`retrying`, from the settling), so a redelivery that starts at
  once is not overwritten.
* After the batch, :meth:`ended` records how its jobs ended, all at once, acknowledging
  none (``record_ends``: Lambda deletes the records not reported): done with the result,
  failed, dead with the traceback, cancelled; each with its last progress and kept its
  job's ``result_ttl``. A record that ran and is reported for retry for another reason (cut
  at the deadline, a dead letter that could not be kept) is recorded ``retrying``. Records
  that did not run (held back behind their FIFO group, too little time left) get no write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..context import JobContext
from ..drivers.contract import StatusBatches, StatusStore
from ..drivers.records import FinalStatus, ReceivedMessage
from ..execution import DeadLetter, Outcome, Retry
from ..idempotency.step import Duplicate
from ..outcomes import final_status, retry_note
from .records import LambdaMessage

#: A record that ran (or began to), with its context, outcome (None: cut at the deadline)
#: and why it is reported for retry (None: it is not).
Ran = tuple[ReceivedMessage, JobContext | None, Outcome | None, "str | None"]


class StatusUnavailable(Exception):
    """The status store could not record a batch's starts: none of it may run."""


class LambdaStatuses:
    """The handler's use of ``batches`` and ``store`` (the same driver); see the module."""

    def __init__(self, batches: StatusBatches, store: StatusStore, log: logging.Logger) -> None:
        self.batches = batches
        self.store = store
        self.log = log

    def start(self, messages: list[LambdaMessage]) -> list[LambdaMessage]:
        """The messages that may run (their starts recorded); raises
        :class:`StatusUnavailable` when the store could not record them."""
        try:
            oks = self.batches.record_start_many(messages)
        except Exception as exc:
            self.log.error(
                "could not record the start of %d record(s) in the status store (%s: %s); "
                "running none of them and reporting them for retry",
                len(messages),
                type(exc).__name__,
                exc,
            )
            raise StatusUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if all(oks):
            return messages
        run = [m for m, ok in zip(messages, oks, strict=True) if ok]
        self.log.info(
            "%d record(s) not run: cancelled, or ended before (a redelivery); Lambda deletes them",
            len(messages) - len(run),
        )
        return run

    def retrying(self, message: ReceivedMessage, outcome: Retry) -> None:
        """Record a run to be retried (a failed write is logged: the retry goes on)."""
        self._retrying(message, *retry_note(outcome.error))

    def ended(self, ran: Sequence[Ran]) -> None:
        """Record how the batch's runs ended (see the module docstring)."""
        finished: list[tuple[ReceivedMessage, FinalStatus]] = []
        for message, ctx, outcome, why in ran:
            if type(outcome) is Retry or isinstance(outcome, Duplicate):
                continue  # recorded by retrying(); a duplicate's first run recorded its end
            if outcome is None or why is not None:
                if ctx is not None:  # a body that is no job has no status
                    self._retrying(message, *_reported_note(outcome, why))
            elif outcome.message is not None:
                finished.append((message, final_status(outcome, ctx)))
        if finished:
            self.batches.record_ends(finished)  # False is logged: the jobs ran all the same

    def may_run(self, received: ReceivedMessage) -> bool:
        """Record the start of one run (an EventBridge event's, whose job id is the
        event's id); False: an earlier delivery of the event ended (or the job was
        cancelled), so this one must not run. A store that cannot be reached raises."""
        return self.store.record_start(received)

    def _retrying(self, received: ReceivedMessage, error: str, traceback: str | None) -> None:
        try:
            self.store.record_retry(received, error, traceback)
        except Exception:
            self.log.warning(
                "could not record the retry of message %s in the status store; its status "
                "shows its last state until its next run",
                received.message_id or "(no messageId)",
                exc_info=True,
            )


def _reported_note(outcome: Outcome | None, why: str | None) -> tuple[str, str | None]:
    """The error kept for a run reported for retry for ``why`` (not a Retry outcome)."""
    if isinstance(outcome, DeadLetter):
        return f"{why}: {outcome.reason}", outcome.traceback
    return str(why), None
