"""The worker's side of flow limits (``define_job(rate_limit=..., concurrency_limit=...)``),
one of two ways, as the driver can:

* in the claim (:class:`LimitedReceiver`, on a driver with
  :class:`~glasswork.jobs.drivers.contract.ClaimLimits`, as SQLite and PostgreSQL are): the
  worker tells the driver its jobs' limits once, and each receive admits only the
  deliveries that may start (their starts and slots taken in the claim's transaction), at
  most as many limited ones as the worker can start soon (its free threads; for fast
  limited jobs, about one poll interval of their work more: see
  :meth:`~.receiving.Receiver.wanted`), handed to the threads ahead of anything else, so
  no start or slot waits long in the worker's buffer; those held back are only counted;
* at the start (:class:`FlowGate`, on a driver with only
  :class:`~glasswork.jobs.drivers.contract.FlowLimits`, as the mock is): before a delivery
  of a limited job runs, on its job thread, the driver takes its start and its slot, or
  puts it back until it may (:class:`Throttled`: not an attempt, not a failure, nothing
  left to settle).

A worker whose jobs have no limits has neither, and pays nothing; one on a driver that
cannot hold limits across workers refuses to start
(:func:`~glasswork.jobs.limits.refuse_unheld_limits`), rather
than run limited jobs unlimited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import ClassVar

from ..context import JobContext
from ..drivers.contract import FlowLimits, LimitedClaims
from ..drivers.records import LimitedBatch, ReceivedMessage
from ..execution import Outcome
from ..metrics.sink import throttle_sinks
from ..start_gate import StartGate


class Throttled(Outcome):
    """A delivery its limits held back: the driver put it back already, so the worker only
    counts it (``throttled``)."""

    __slots__ = ()
    kind: ClassVar[str] = "throttled"


THROTTLED = Throttled(None)


class FlowGate(StartGate):
    """Asks ``flow`` before each limited delivery starts (see the module docstring)."""

    def __init__(
        self, flow: FlowLimits, log: logging.Logger, metrics: Sequence[object] = ()
    ) -> None:
        super().__init__(flow, log, throttle_sinks(metrics))

    def may_start(self, received: ReceivedMessage, ctx: JobContext) -> bool:
        """Whether this delivery may start now; False: the driver put it back."""
        return self.take(received, ctx) is None


class LimitedReceiver:
    """Receives through ``claims`` (the driver's
    :class:`~glasswork.jobs.drivers.contract.LimitedClaims` for this worker's jobs),
    counting the deliveries each claim held back: ``count(n)`` (the worker's summary) and
    the sinks of ``metrics`` that count throttles."""

    def __init__(
        self,
        claims: LimitedClaims,
        log: logging.Logger,
        metrics: Sequence[object],
        count: Callable[[int], None],
    ) -> None:
        self.claims = claims
        self.log = log
        self.count = count
        self.sinks = throttle_sinks(metrics)

    def receive(
        self, queues: Sequence[str] | None, count: int, wait: float, room: int
    ) -> LimitedBatch:
        """Up to ``count`` deliveries, at most ``room`` of them of limited jobs (what the
        worker's threads can start soon), long-polling up to ``wait`` seconds."""
        batch = self.claims.claim(queues, count, wait, room)
        for (job, queue), n in batch.throttled.items():
            self.count(n)
            for sink in self.sinks:
                sink.record_throttled(job, queue, n)
            self.log.debug("%d of job %s held back by its limits in the claim", n, job)
        return batch
