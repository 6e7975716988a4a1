"""Taking a limited delivery's start before it runs (``define_job(rate_limit=...,
concurrency_limit=...)``): :class:`StartGate`, what the long-running worker's gate (on a
driver that cannot take limits in the claim) and the Lambda handler's do alike."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .context import JobContext
from .drivers.contract import FlowLimits
from .drivers.records import ReceivedMessage
from .metrics.sink import ThrottleSink

_FROM_MESSAGE = object()


class StartGate:
    """Asks ``flow`` (the driver's :class:`~glasswork.jobs.drivers.contract.FlowLimits`)
    before a delivery of a limited job starts; ``sinks``: the metrics sinks that count
    throttles."""

    def __init__(
        self, flow: FlowLimits, log: logging.Logger, sinks: Sequence[ThrottleSink]
    ) -> None:
        self.flow = flow
        self.log = log
        self.sinks = sinks

    def take(self, received: ReceivedMessage, ctx: JobContext) -> float | None:
        """None when the delivery may start now (its job has no limits, or its start and
        slot were taken); otherwise the seconds until it may try again, the driver having
        put it back, the throttle counted and logged (DEBUG: it is not a failure)."""
        definition = ctx.definition
        limits = definition.limits if definition is not None else None
        if definition is None or limits is None:
            return None
        # The decoded envelope has every field; a message parsed the slow way, the message.
        key = ctx._fields.get("concurrency_key", _FROM_MESSAGE)
        if key is _FROM_MESSAGE:
            key = ctx.job.concurrency_key
        wait = self.flow.acquire(received, definition.name, key, limits)
        if wait is None:
            # A driver may take receives that were throttles off the attempt (SQS FIFO).
            ctx.attempt = received.attempt
            return None
        for sink in self.sinks:
            sink.record_throttled(definition.name, ctx._fields["queue"], 1)
        self.log.debug(
            "job %s %s held back by its limits (%s): trying again in %.3fs",
            definition.name,
            ctx._fields.get("job_id"),
            limits,
            wait,
        )
        return wait
