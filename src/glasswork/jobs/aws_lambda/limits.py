"""Flow limits in the Lambda handler (``define_job(rate_limit=..., concurrency_limit=...)``):
before a limited record runs, the driver takes its start and its concurrency slot
(:class:`~glasswork.jobs.drivers.contract.FlowLimits`), or puts it back until it may.

Only a driver whose runs free their own slots (``releases_slots_itself``: the SQS driver
with a ``limits_table``) can be held here, since Lambda deletes a finished record without a
driver call; with any other, :func:`~glasswork.jobs.limits.refuse_unheld_limits` refuses the
limited jobs at bootstrap. A handler whose jobs have no limits has no gate, and pays nothing.

A record put back is not run and not counted as an attempt: on a standard queue the driver
sent a copy and deleted it, so it is not reported (reporting a deleted record would change
nothing, but would fail a whole batch of them); on a FIFO queue it is still there, hidden
for the wait, so it is reported, which holds back the rest of its group in the batch, and
the group keeps its order. Either way it is counted ``throttled`` (the ``ThrottleSink`` s:
EMF ``Throttled``), not as a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..context import JobContext
from ..drivers.contract import FlowLimits
from ..metrics.sink import throttle_sinks
from ..start_gate import StartGate
from .records import LambdaMessage

#: Why a FIFO record held back by its limits is reported.
THROTTLED = "held back by its job's limits (not an attempt)"
#: Why a record whose limits could not be asked is reported.
LIMITS_FAILED = "its limits could not be taken"


class LambdaLimits(StartGate):
    """Asks ``flow`` before each limited record runs (see the module docstring)."""

    def __init__(
        self, flow: FlowLimits, log: logging.Logger, metrics: Sequence[object] = ()
    ) -> None:
        super().__init__(flow, log, throttle_sinks(metrics))

    def read_attempts(self, records: Sequence[Any], messages: Sequence[LambdaMessage]) -> None:
        """Add to each message's attempt those its job spent before it was re-sent for a
        throttle (the record's ``GlassworkAttempts`` attribute): its receive count started
        afresh with the copy."""
        # Here, not at the top: importing the SQS package costs every handler's cold start.
        from ..drivers.sqs.attempts import attempts_before

        for record, message in zip(records, messages, strict=True):
            before = attempts_before(record.get("messageAttributes")) if type(record) is dict else 0
            if before:
                message.attempt += before

    def may_start(self, message: LambdaMessage, ctx: JobContext, fifo: bool) -> str | None:
        """None when the record may start now (its start and slot taken); otherwise why it
        is reported for retry, or ``""`` when it was put back and is not to be reported."""
        try:
            wait = self.take(message, ctx)
        except Exception:
            self.log.exception(
                "could not take the limits of message %s (job %s); reporting it for retry",
                message.message_id or "?",
                ctx.definition.name if ctx.definition is not None else "?",
            )
            return LIMITS_FAILED
        if wait is None:
            return None
        return THROTTLED if fifo else ""
