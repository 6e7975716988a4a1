"""WorkerSummary: what a worker run did, counted by outcome."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: Outcome kinds as counted in :class:`WorkerSummary` (``duplicate``: an idempotent job
#: whose key was completed already, acknowledged without running; ``cancelled``: a job
#: asked to stop that did), plus ``released`` (handed back unrun or unfinished at shutdown),
#: ``skipped`` (not run: the driver's status store said it was cancelled or had ended),
#: ``throttled`` (not run yet: its rate or concurrency limit held it back, and the driver
#: put it back for later, not as an attempt) and
#: ``errors`` (the worker itself could not settle the job: its lease is left to run out, so
#: it is delivered again).
SUMMARY_KINDS = (
    "done",
    "retry",
    "dead_letter",
    "discarded",
    "cancelled",
    "duplicate",
    "released",
    "skipped",
    "throttled",
    "errors",
)
#: The kinds of deliveries that ran to an outcome.
_RAN = tuple(kind for kind in SUMMARY_KINDS if kind not in ("released", "skipped", "throttled"))
#: Kinds the summary's line shows only when there were some (jobs' statuses kept).
_SHOWN_IF_ANY = ("cancelled", "skipped", "throttled")


@dataclass(slots=True)
class WorkerSummary:
    """What a worker did: outcome counts, elapsed seconds, periodic jobs fired, and (a run
    until empty) the retries it scheduled that were not due yet when it stopped."""

    counts: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    fired: int = 0
    pending_retries: int = 0

    @property
    def jobs(self) -> int:
        """Deliveries that ran to an outcome (released ones are not counted)."""
        return sum(self.counts[k] for k in _RAN)

    @property
    def done(self) -> int:
        """Jobs that finished."""
        return self.counts["done"]

    @property
    def dead_lettered(self) -> int:
        """Jobs sent to the dead letter."""
        return self.counts["dead_letter"]

    @property
    def retried(self) -> int:
        """Failed runs that will be retried."""
        return self.counts["retry"]

    @property
    def throttled(self) -> int:
        """Deliveries their rate or concurrency limits held back (put back for later)."""
        return self.counts["throttled"]

    @property
    def released(self) -> int:
        """Jobs handed back unfinished at shutdown."""
        return self.counts["released"]

    def __str__(self) -> str:
        rate = self.jobs / self.elapsed if self.elapsed > 0 else 0.0
        parts = ", ".join(
            f"{k}={self.counts[k]}"
            for k in SUMMARY_KINDS
            if self.counts[k] or k not in _SHOWN_IF_ANY
        )
        fired = f", periodic fired={self.fired}" if self.fired else ""
        pending = self.pending_retries
        later = (
            f"; {pending} {'retry' if pending == 1 else 'retries'} pending, not due yet"
            if pending
            else ""
        )
        noun = "job" if self.jobs == 1 else "jobs"
        return f"{self.jobs} {noun} in {self.elapsed:.1f}s ({rate:.0f}/s): {parts}{fired}{later}"
