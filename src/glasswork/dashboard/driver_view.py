"""The dashboard's view of a driver: each feature is a capability the driver may lack.

What the driver can do comes from the driver contract
(:func:`~glasswork.jobs.drivers.contract.capabilities_of`): queue counts, dead-letter admin
and search, outcome history, job lookup, heartbeats, job statuses (history, one job's
status, cancelling), flow limits (how often they held jobs back); any driver that has a
group (declared, or by writing its methods) gets the page that uses it. A driver that can
only list its dead letters is searched in memory; one that can only list them is looked up
there too. Outcome history may come from elsewhere than the driver (``outcomes``:
CloudWatch's metrics of the Lambda workers), and so may the workers panel (``lambdas``: the
Lambda functions working SQS queues). A missing capability raises :class:`Unsupported`,
which pages show as "the <driver> driver cannot ...".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..jobs.drivers.contract import (
    OutcomeHistory,
    QueueDriver,
    StatusStore,
    capabilities_of,
    lookup_scope,
    outcome_source,
)
from ..jobs.drivers.dead_letter_search import search, time_cursor
from ..jobs.drivers.records import (
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterRecord,
    FoundJob,
    JobStatus,
    OutcomeCount,
    QueueStats,
    WorkerBeat,
)
from ..jobs.errors import StatusUnavailableError
from .security import Redactor

if TYPE_CHECKING:
    from ..jobs.metrics.lambda_concurrency import LambdaConcurrency, LambdaWorkers

T = TypeVar("T")

#: Dead letters read at most from a driver that can only list them (no search of its own).
DEAD_LETTER_LIMIT = 100_000


class Unsupported(Exception):
    """The driver lacks a capability; the message says which, for the page."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a job lookup found, and where it could look (``scope``)."""

    found: list[FoundJob]
    scope: str


@dataclass(frozen=True, slots=True)
class Workers:
    """The workers panel: the heartbeats of long-running workers (``beats``), or the Lambda
    functions working SQS queues (``lambdas``), and where the numbers come from."""

    source: str
    beats: list[WorkerBeat] | None = None
    lambdas: LambdaWorkers | None = None


class DriverView:
    """Capability-checked calls on ``driver``; their errors are shown through ``redact``.
    ``outcomes``, when given, is read for outcome history instead of the driver; ``lambdas``
    fills the workers panel of a driver without heartbeats."""

    def __init__(
        self,
        driver: QueueDriver,
        redact: Redactor,
        outcomes: OutcomeHistory | None = None,
        lambdas: LambdaConcurrency | None = None,
    ) -> None:
        self.driver = driver
        self.capabilities = capabilities_of(driver)
        self.redact = redact
        self.outcomes = outcomes
        self.lambdas = lambdas

    @property
    def name(self) -> str:
        return self.driver.name

    def _need(self, group: T | None, what: str) -> T:
        """``group`` (a field of :attr:`capabilities`), or :class:`Unsupported`."""
        if group is None:
            raise Unsupported(f"the {self.name} driver cannot {what}")
        return group

    def error_text(self, error: BaseException) -> str:
        """An error as the page shows it: its type and message, secrets masked."""
        if isinstance(error, Unsupported):
            return str(error)
        return self.redact(f"{type(error).__name__}: {error}")

    # -- reading -------------------------------------------------------------------------

    def stats(self) -> list[QueueStats]:
        """Per queue counts, sorted by queue."""
        raw = self._need(self.capabilities.stats, "report queue counts").stats()
        return [_as_stats(queue, value) for queue, value in sorted(raw.items())]

    def dead_letters(
        self, queue: str | None = None, limit: int = DEAD_LETTER_LIMIT
    ) -> list[DeadLetterRecord]:
        admin = self._need(self.capabilities.dead_letter_admin, "list dead letters")
        return admin.dead_letters(queue=queue, limit=limit)

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None, limit: int
    ) -> DeadLetterPage:
        """A page of the dead letters ``query`` matches, newest first."""
        searching = self.capabilities.dead_letter_search
        if searching is not None:
            return searching.dead_letter_page(query, cursor, limit)
        return search(self.dead_letters(query.queue), query, cursor, limit)

    def dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """One dead letter by its id, wherever it is in the list."""
        searching = self.capabilities.dead_letter_search
        if searching is not None:
            return searching.find_dead_letter(record_id)
        return next((r for r in self.dead_letters() if r.id == record_id), None)

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Redrive every dead letter ``query`` matches."""
        searching = self.capabilities.dead_letter_search
        if searching is not None:
            return searching.redrive_matching(query)
        return self.redrive(self._matching_ids(query))

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Purge every dead letter ``query`` matches."""
        searching = self.capabilities.dead_letter_search
        if searching is not None:
            return searching.purge_matching(query)
        return self.purge(self._matching_ids(query))

    def _matching_ids(self, query: DeadLetterQuery) -> list[str]:
        """The ids of a driver that cannot search, found in memory."""
        records = self.dead_letters(query.queue)
        return [r.id for r in records if query.matches(r, time_cursor(r))]

    def workers(self) -> Workers:
        """The workers panel: heartbeats where the driver keeps them, else the Lambda
        functions working its queues (SQS)."""
        heartbeats = self.capabilities.heartbeats
        store = heartbeats.heartbeat_store() if heartbeats is not None else None
        if store is not None:
            return Workers(
                f"the heartbeats workers write through the {self.name} driver",
                beats=list(store.workers()),
            )
        if self.lambdas is not None:
            return Workers(self.lambdas.source, lambdas=self.lambdas.read())
        raise Unsupported(f"the {self.name} driver keeps no worker heartbeats")

    def throttle_counts(self) -> dict[str, int]:
        """How many deliveries each job's limits held back, across every worker."""
        flow = self._need(self.capabilities.flow_limits, "hold rate or concurrency limits")
        return dict(flow.throttle_counts())

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        if self.outcomes is not None:
            return self.outcomes.outcome_history(since)
        history = self._need(self.capabilities.outcome_history, "record job outcomes per minute")
        return history.outcome_history(since)

    @property
    def has_outcomes(self) -> bool:
        """Whether there is an outcome history to read (the driver's, or ``outcomes``)."""
        return self.outcomes is not None or self.capabilities.outcome_history is not None

    @property
    def outcome_source(self) -> str:
        """Where the outcome counts come from, for the page."""
        source = self.outcomes if self.outcomes is not None else self.capabilities.outcome_history
        said = outcome_source(source) if source is not None else None
        return said or f"the outcome counts the workers record through the {self.name} driver"

    def find_job(self, job_id: str) -> Lookup:
        """Pending and dead copies of ``job_id`` where the driver can look them up; a driver
        that can only list dead letters is searched there."""
        finder = self.capabilities.job_lookup
        if finder is not None:
            scope = lookup_scope(finder) or "pending jobs and dead letters"
            return Lookup(finder.find_job(job_id), scope)
        if self.capabilities.dead_letter_admin is not None:
            found = [
                FoundJob(job_id, "dead", r.queue, r.job_name, r.body, dead_letter=r)
                for r in self.dead_letters()
                if r.job_id == job_id
            ]
            return Lookup(
                found,
                f"dead letters only (the {self.name} driver cannot look up pending jobs)",
            )
        raise Unsupported(f"the {self.name} driver cannot look up jobs")

    @property
    def has_status(self) -> bool:
        """Whether the driver has a status store (an SQS driver without its status table
        has one that says so when asked)."""
        return self.capabilities.status is not None

    def job_history(
        self,
        state: str | None,
        job_name: str | None,
        queue: str | None,
        limit: int,
        before: str | None,
    ) -> list[JobStatus]:
        """Jobs newest first (by their last change), filtered; ``before``: the job id
        the previous page ended with."""
        return self._statuses(
            lambda store: store.job_history(
                state=state, job_name=job_name, queue=queue, limit=limit, before=before
            )
        )

    def job_status(self, job_id: str) -> JobStatus | None:
        return self._statuses(lambda store: store.job_status(job_id))

    def _statuses(self, fn: Callable[[StatusStore], T]) -> T:
        store = self._need(self.capabilities.status, "keep job statuses")
        try:
            return fn(store)
        except StatusUnavailableError as exc:  # not set up (SQS: no status table)
            raise Unsupported(str(exc)) from exc

    # -- acting --------------------------------------------------------------------------

    def cancel_job(self, job_id: str) -> bool:
        """Cancel job ``job_id`` (a running one is asked to stop); False when it is
        unknown or has ended."""
        return self._statuses(lambda store: store.cancel(job_id, "cancelled from the dashboard"))

    def redrive(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return self._need(self.capabilities.dead_letter_admin, "redrive dead letters").redrive(
            list(ids)
        )

    def purge(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        admin = self._need(self.capabilities.dead_letter_admin, "purge dead letters")
        return admin.purge_dead_letters(list(ids))


def _as_stats(queue: str, value: Any) -> QueueStats:
    if isinstance(value, QueueStats):
        return value
    if isinstance(value, Mapping):  # a custom driver reporting plain counts
        counts = {k: int(value.get(k) or 0) for k in ("delayed", "in_flight", "dead")}
        return QueueStats(queue, ready=int(value.get("ready", value.get("visible")) or 0), **counts)
    raise TypeError(f"stats() of queue {queue!r} is {type(value).__name__}, not QueueStats")
