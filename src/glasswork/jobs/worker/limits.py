"""The worker's side of flow limits (``define_job(rate_limit=..., concurrency_limit=...)``):
before a delivery of a limited job runs, on its job thread, the driver takes its start and
its concurrency slot (:class:`~glasswork.jobs.drivers.contract.FlowLimits`), or puts it back
until it may (:class:`Throttled`: not an attempt, not a failure, nothing left to settle).

A worker whose jobs have no limits has no gate, and pays nothing; one on a driver that
cannot hold limits across workers refuses to start
(:func:`~glasswork.jobs.limits.refuse_unheld_limits`), rather
than run limited jobs unlimited.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

from ..context import JobContext
from ..drivers.contract import FlowLimits
from ..drivers.records import ReceivedMessage
from ..execution import Outcome
from ..metrics.sink import ThrottleSink


class Throttled(Outcome):
    """A delivery its limits held back: the driver put it back already, so the worker only
    counts it (``throttled``)."""

    __slots__ = ()
    kind: ClassVar[str] = "throttled"


THROTTLED = Throttled(None)
_FROM_MESSAGE = object()


class FlowGate:
    """Asks ``flow`` before each limited delivery starts (see the module docstring)."""

    def __init__(
        self, flow: FlowLimits, log: logging.Logger, metrics: Sequence[object] = ()
    ) -> None:
        self.flow = flow
        self.log = log
        #: The worker's sinks that count throttles.
        self.sinks = [sink for sink in metrics if isinstance(sink, ThrottleSink)]

    def may_start(self, received: ReceivedMessage, ctx: JobContext) -> bool:
        """Whether this delivery may start now; False: the driver put it back."""
        definition = ctx.definition
        limits = definition.limits if definition is not None else None
        if definition is None or limits is None:
            return True
        # The decoded envelope has every field; a message parsed the slow way, the message.
        key = ctx._fields.get("concurrency_key", _FROM_MESSAGE)
        if key is _FROM_MESSAGE:
            key = ctx.job.concurrency_key
        wait = self.flow.acquire(received, definition.name, key, limits)
        if wait is None:
            # A driver may take receives that were throttles off the attempt (SQS FIFO).
            ctx.attempt = received.attempt
            return True
        for sink in self.sinks:
            sink.record_throttled(definition.name, ctx._fields["queue"], 1)
        self.log.debug(
            "job %s %s held back by its limits (%s): trying again in %.3fs",
            definition.name,
            ctx._fields.get("job_id"),
            limits,
            wait,
        )
        return False
