"""What the Lambda worker does with a message's outcome besides the batch response.

* :class:`~glasswork.jobs.Retry`: the job's backoff, as the message's visibility timeout,
  through the driver when it can (SQS); the message is reported for retry. With a status
  store, the run is recorded ``retrying`` first (so a redelivery due at once that starts
  meanwhile is not overwritten).
* :class:`~glasswork.jobs.DeadLetter`: the driver's dead letter; with no driver, the DLQ of
  the message's queue, found from its ``eventSourceARN`` and redrive policy
  (:mod:`glasswork.jobs.aws_lambda.source_queues`). When the dead letter cannot be kept (no
  DLQ, no permission, a failed send), the message is reported for retry instead, so SQS
  keeps it and its redrive policy applies: a failed message kept nowhere is never deleted.
* Finished messages of a batch the worker must raise for are deleted first (:meth:`ack`),
  so Lambda returning the batch does not run them again.

(The long-running worker's counterpart is :class:`glasswork.jobs.worker.settling.Settler`:
it acknowledges every message itself, where Lambda deletes a batch's finished ones.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..drivers.contract import QueueDriver
from ..execution import DeadLetter, DeadLetterSender, Outcome, Retry
from .records import LambdaMessage
from .source_queues import RecordQueues, in_lambda
from .status import LambdaStatuses

RETRY = "retry"
NOT_KEPT = "dead letter not kept"


class BatchSettler:
    """Settles the outcomes of one worker's batches: ``settler(message, outcome)`` returns
    why the message must be reported for retry, or None."""

    def __init__(
        self,
        driver: QueueDriver | None,
        queues: RecordQueues,
        log: logging.Logger,
        statuses: LambdaStatuses | None = None,
    ):
        self.driver = driver
        self.queues = queues
        self.log = log
        self.statuses = statuses
        # Whether the driver's dead_letter takes the traceback: decided once, here.
        self.dead_letters = DeadLetterSender(driver)

    def __call__(self, message: LambdaMessage, outcome: Outcome) -> str | None:
        if isinstance(outcome, Retry):
            if self.statuses is not None:
                self.statuses.retrying(message, outcome)
            self._delay_retry(message, outcome)
            return RETRY
        if isinstance(outcome, DeadLetter):
            return None if self._dead_letter(message, outcome) else NOT_KEPT
        return None  # Done, Discard

    def keep(self, body: str, outcome: DeadLetter, queue: str) -> str | None:
        """Hand a dead letter to the driver: None when it is kept, else why not."""
        if self.driver is None:
            return "no driver is configured to keep it"
        try:
            kept = self.dead_letters.send(body, outcome, queue)
        except Exception as exc:
            return f"the dead-letter send failed: {type(exc).__name__}: {exc}"
        if not kept:
            target = outcome.message.queue if outcome.message is not None else queue
            return f"the {self.driver.name} driver has no dead letter for queue {target!r}"
        return None

    def ack(self, messages: Iterable[LambdaMessage]) -> None:
        """Delete finished messages (before the worker raises for their batch)."""
        for message in messages:
            if message.receipt is None:
                continue
            try:
                if self.driver is not None:
                    self.driver.ack(message)
                else:
                    self.queues.delete(message.source_arn, message.receipt)
            except Exception as exc:
                self.log.warning(
                    "could not delete finished message %s (%s: %s); it will run again when "
                    "Lambda returns its batch",
                    message.message_id,
                    type(exc).__name__,
                    exc,
                )

    def _dead_letter(self, message: LambdaMessage, outcome: DeadLetter) -> bool:
        arn = message.source_arn
        if self.driver is not None or not arn:
            why = self.keep(message.body, outcome, message.queue)
        elif not in_lambda():
            why = "no driver is configured, and outside Lambda the worker does not look up DLQs"
        else:
            why = self.queues.dead_letter(arn, message.body, outcome.reason, outcome.traceback)
        if why is None:
            return True
        self.log.error(
            "could not dead-letter message %s: %s. Reporting it for retry so SQS keeps it "
            "(the queue's redrive policy applies). Reason: %s; body: %.1000s",
            message.message_id or "(no messageId)",
            why,
            outcome.reason,
            message.body,
        )
        return False

    def _delay_retry(self, message: LambdaMessage, outcome: Retry) -> None:
        """Apply the job's backoff by pushing the message's visibility out, when the driver
        can (SQS); otherwise SQS redelivers after the queue's visibility timeout."""
        if self.driver is None:
            return
        try:
            self.driver.nack(message, outcome.delay)
        except NotImplementedError:
            pass
        except Exception:
            self.log.warning(
                "could not set the retry delay of message %s", message.message_id, exc_info=True
            )
