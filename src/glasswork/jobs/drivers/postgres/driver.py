"""PostgresQueueDriver: the queue in PostgreSQL tables, shared by workers on many machines."""

from __future__ import annotations

import itertools
import random
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from ...durations import setting_seconds
from ...errors import ConfigurationError
from ...limits import SLOT_RETRY, JobLimits, slot_key
from ...message import JobMessage, identify
from ...workflows.advancing import dead_end
from ..contract import (
    BatchAck,
    BatchNack,
    ClaimLimits,
    Closing,
    Consuming,
    DeadLetterAdmin,
    DeadLetterSearch,
    FlowLimits,
    HandBack,
    Heartbeats,
    JobFinder,
    LeaseExtension,
    OutcomeStore,
    PendingCount,
    PeriodicClaims,
    PeriodicFire,
    QueueCounts,
    QueueDriver,
    TransactionalEnqueue,
)
from ..records import (
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterRecord,
    EnqueueResult,
    FoundJob,
    OutcomeCount,
    QueueStats,
    ReceivedMessage,
)
from . import claims, deadlines, fairness, inspection, periodic, schema
from .bound import BoundPostgresDriver
from .connections import Connections, redacted
from .dead_letter_search import DeadLetterTable
from .limits import Claim, LimitedClaims, throttle_counts
from .notifications import Notifications
from .outcomes import OutcomeCounts
from .producing import Producer, debounce_job, find_inserted, insert_jobs
from .statements import Statements
from .status import StatusRows, StatusStatements
from .text import storable
from .workers import WorkerRows
from .workflows import WorkflowRows


class PostgresQueueDriver(
    Producer,
    Consuming,
    BatchAck,
    BatchNack,
    HandBack,
    LeaseExtension,
    PeriodicClaims,
    QueueCounts,
    PendingCount,
    DeadLetterAdmin,
    DeadLetterSearch,
    OutcomeStore,
    JobFinder,
    Heartbeats,
    TransactionalEnqueue,
    Closing,
    FlowLimits,
    ClaimLimits,
    WorkflowRows,
    StatusRows,
):
    """A durable queue in PostgreSQL: any number of workers on any number of machines,
    delays of any length, and enqueues that commit with your own transaction.

    >>> driver = PostgresQueueDriver("postgresql://app@db/app", schema="jobs")  # doctest: +SKIP
    >>> JobService(driver).enqueue(job, payload, connection=conn)  # in conn's transaction

    * ``schema``: the PostgreSQL schema holding the tables (created if missing);
    * ``visibility_timeout``: seconds a claimed job stays hidden before it is delivered again
      (the worker extends the leases of jobs that run longer);
    * ``max_lost_leases``: deliveries whose lease ran out (the worker died or stalled) before
      the job is dead-lettered;
    * ``poll_interval``: the slow poll of a waiting :meth:`receive`, in case a notification
      was missed (new jobs wake it at once through ``LISTEN/NOTIFY``);
    * ``min_connections``/``max_connections``: the size of this process's pool;
    * ``reconnect_timeout``: how long a call keeps retrying while the server is unreachable;
    * ``statement_timeout``: the server cancels the driver's statements that run longer, and
      a connection silent for 2 s more is closed as dead, so the call is retried on a new
      one (0: no bound; see :mod:`.deadlines` for the TCP bounds added to ``dsn``);
    * ``migrate``: create or upgrade the tables now (False: refuse to start unless
      ``glasswork migrate`` has brought them to this version).

    Jobs are claimed highest ``priority`` first, then oldest due. Each job's life is kept
    (:class:`~glasswork.jobs.drivers.contract.StatusStore`, see :mod:`.status`): a queued
    job's state is read off its row, an ended one's is written with its removal and kept for
    its ``result_ttl``.

    Workers on it record outcome counts per minute and heartbeats, and it finds jobs by id
    and searches dead letters, for the dashboard (see :mod:`.outcomes`, :mod:`.workers`,
    :mod:`.inspection`, :mod:`.dead_letter_search`); set ``records_outcomes = False`` before
    building a worker to leave the outcome counts out, ``outcome_retention`` (seconds, a
    day by default) to keep more or less of them.

    The object may be shared between threads; each process opens its own pool.
    """

    name = "postgresql"
    claims_by_priority = True
    fairness = "round-robin"
    #: Seconds between two looks for the queues holding jobs with a fairness key (claimed
    #: round-robin across keys); a driver that enqueues such a job looks again at once.
    fairness_refresh: float = 1.0
    #: Seconds of outcome history kept.
    outcome_retention: float = 86400.0
    #: Whether workers on this driver record outcome counts (set False before building a
    #: worker to leave the outcome log out of its chain; the dashboard then has no chart).
    records_outcomes: bool = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        visibility_timeout: float = 30.0,
        max_lost_leases: int = 5,
        poll_interval: float = 5.0,
        min_connections: int = 1,
        max_connections: int = 10,
        reconnect_timeout: float = 30.0,
        statement_timeout: float = deadlines.DEFAULT_STATEMENT_TIMEOUT,
        migrate: bool = True,
    ) -> None:
        visibility_timeout = setting_seconds(visibility_timeout, "visibility_timeout")
        poll_interval = setting_seconds(poll_interval, "poll_interval")
        reconnect_timeout = setting_seconds(reconnect_timeout, "reconnect_timeout", zero=True)
        statement_timeout = setting_seconds(
            statement_timeout, "statement_timeout", zero=True, most=deadlines.MAX_STATEMENT_TIMEOUT
        )
        _check(max_lost_leases >= 1, "max_lost_leases must be at least 1", max_lost_leases)
        _check(min_connections >= 0, "min_connections must be at least 0", min_connections)
        _check(
            max_connections >= max(1, min_connections),
            "max_connections must be at least 1 and at least min_connections",
            max_connections,
        )
        # The NOTIFY channel, "glasswork:<schema>", must fit PostgreSQL's 63-byte names.
        _check(0 < len(schema.encode()) <= 53, "schema must be 1 to 53 bytes long", schema)
        self.dsn = dsn
        self.schema = schema
        self.visibility_timeout = float(visibility_timeout)
        self.max_lost_leases = max_lost_leases
        self.poll_interval = float(poll_interval)
        self.statement_timeout = statement_timeout
        self.sql = Statements(schema)
        self.status_sql = StatusStatements(schema)
        self.fair_sql = fairness.FairStatements(schema)
        self._fair = fairness.FairQueues(self.fair_sql, self.fairness_refresh)
        try:
            self._connections = Connections(
                dsn,
                min_size=min_connections,
                max_size=max_connections,
                reconnect_timeout=reconnect_timeout,
                statement_timeout=statement_timeout,
            )
        except psycopg.Error as exc:
            raise ConfigurationError(
                f"cannot read the PostgreSQL connection string: {exc}"
            ) from None
        self._notifications = Notifications(dsn, self.sql.channel, statement_timeout)
        self._outcomes = OutcomeCounts(self._connections, self.sql)
        self._dead_letter_table = DeadLetterTable(self._connections, self.sql)
        self._workers = WorkerRows(self._connections, self.sql)
        self._rotation = itertools.count()
        # Close the pool and the listener when the driver is dropped (or at exit), on the
        # thread dropping it: an unclosed pool left to the garbage collector may be collected
        # on one of its own threads, which cannot stop themselves.
        self._release = weakref.finalize(self, _release, self._notifications, self._connections)
        self._prepare_schema(migrate)

    def __repr__(self) -> str:
        return f"PostgresQueueDriver({redacted(self.dsn)!r}, schema={self.schema!r})"

    def _prepare_schema(self, migrate: bool) -> None:
        """Check (or bring) the tables to this version, on a connection of its own, so a
        wrong DSN or a missing migration shows at construction."""
        where = f"{redacted(self.dsn)} (schema {self.schema!r})"
        try:
            with deadlines.connect(self.dsn, self.statement_timeout) as conn:
                if migrate:
                    schema.migrate(conn, self.schema)
                    return
                version = schema.current_version(conn, self.schema)
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot prepare the job tables at {where}: {exc}") from exc
        if version == 0:
            raise ConfigurationError(
                f"no Glasswork job tables at {where} (schema version 0, this glasswork "
                f"needs {schema.SCHEMA_VERSION}): check the database and the schema "
                "(schema=), or create them with `glasswork migrate --driver URL --apply` "
                "(or migrate=true)"
            )
        if version != schema.SCHEMA_VERSION:
            raise ConfigurationError(
                f"the job tables at {where} are at schema version {version}, this glasswork "
                f"needs {schema.SCHEMA_VERSION}: run `glasswork migrate --driver URL --apply` "
                "(or drop migrate=false)"
            )

    def close(self) -> None:
        """Close this process's pool and stop listening."""
        self._release()

    def __enter__(self) -> PostgresQueueDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bind(self, connection: Any) -> QueueDriver:
        """This driver enqueueing with ``connection`` (a psycopg 3 ``Connection``) inside its
        open transaction: see :class:`BoundPostgresDriver`."""
        return BoundPostgresDriver(self, self.sql, connection)

    # -- producing -------------------------------------------------------------------------

    def _insert(
        self, messages: Sequence[JobMessage], *, delay: float = 0.0, at: datetime | None = None
    ) -> list[EnqueueResult]:
        def insert(conn: psycopg.Connection, retrying: bool) -> list[EnqueueResult]:
            # The connection may have broken after the commit: then the jobs are there.
            done = find_inserted(conn, self.sql, messages) if retrying else None
            return done or insert_jobs(conn, self.sql, messages, delay=delay, at=at)

        results = self._connections.run("enqueue", insert)
        if any(m.fairness_key is not None for m in messages):
            self._fair.touched()
        return results

    def _debounce(self, message: JobMessage, window: float) -> EnqueueResult:
        result = self._connections.run(
            "enqueue", lambda conn, _: debounce_job(conn, self.sql, message, window)
        )
        if message.fairness_key is not None:
            self._fair.touched()
        return result

    # -- consuming -------------------------------------------------------------------------

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        """Claim up to ``max_messages`` due jobs, oldest due first in each queue, leasing each
        for ``visibility_timeout`` seconds. With ``wait_seconds``, wait that long for the first
        one: a ``NOTIFY`` wakes the wait when a job is committed, a timer when a delayed job
        comes due, and a slow poll (``poll_interval``) covers missed notifications."""
        return self._receive_with(queues, max_messages, wait_seconds, self._claim_plain)

    def _receive_with(
        self,
        queues: Sequence[str] | None,
        max_messages: int,
        wait_seconds: float,
        claim: Claim,
        done: Callable[[], bool] = lambda: False,
    ) -> list[ReceivedMessage]:
        """:meth:`receive`, each claim made by ``claim(connection, queues, limit,
        rotation)`` (the plain claim, or one holding flow limits: see :mod:`.limits`), the
        wait ended early once ``done()``."""
        names = list(queues) if queues else None
        if max_messages <= 0:
            return []
        deadline = time.monotonic() + wait_seconds
        listening = wait_seconds > 0 and self._notifications.start()
        while True:
            mark = self._notifications.mark(names)
            received, next_due = self._claim(names, max_messages, wait_seconds > 0, claim)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0 or done():
                return received
            pause = min(
                remaining, self.poll_interval if listening else min(self.poll_interval, 0.5)
            )
            if next_due is not None:
                pause = min(pause, max(0.001, next_due))
            self._notifications.wait(names, mark, pause)

    def _claim(
        self,
        queues: list[str] | None,
        limit: int,
        want_next_due: bool,
        claim: Claim,
    ) -> tuple[list[ReceivedMessage], float | None]:
        rotation = next(self._rotation)  # which queue goes first, so none starves

        def run(conn: psycopg.Connection, _: bool) -> tuple[list[ReceivedMessage], float | None]:
            received = claim(conn, queues, limit, rotation)
            if received or not want_next_due:
                return received, None
            return [], claims.next_due(conn, self.sql, queues)

        return self._connections.run("claim jobs", run)

    def _claim_plain(
        self, conn: psycopg.Connection, queues: list[str] | None, limit: int, rotation: int
    ) -> list[ReceivedMessage]:
        fair = self._fair.of(conn, queues)
        if fair:  # some are claimed round-robin across their fairness keys
            return fairness.claim(
                conn,
                self.sql,
                self.status_sql,
                self._fair,
                fair=fair,
                queues=queues,
                limit=limit,
                lease=self.visibility_timeout,
                rotation=rotation,
                max_lost_leases=self.max_lost_leases,
            )
        return claims.claim(
            conn,
            self.sql,
            self.status_sql,
            queues=queues,
            limit=limit,
            lease=self.visibility_timeout,
            rotation=rotation,
            max_lost_leases=self.max_lost_leases,
        )

    def ack(self, received: ReceivedMessage) -> None:
        self.ack_many([received])

    def ack_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Remove finished jobs in one statement (deliveries whose lease another worker has
        since taken are left alone)."""
        if received:
            self._settle("acknowledge jobs", self.sql.ack, received, {})

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        self.nack_many([received], delay_seconds)

    def nack_many(self, received: Sequence[ReceivedMessage], delay_seconds: float = 0.0) -> None:
        """Release jobs to be delivered again after ``delay_seconds``, in one statement."""
        if received:
            params = {"delay": max(0.0, delay_seconds), "channel": self.sql.channel}
            self._settle("release jobs", self.sql.release, received, params)

    def release_many(self, received: Sequence[ReceivedMessage]) -> None:
        """Hand back jobs a worker could not finish (it is shutting down): due again at once,
        and this delivery does not count as an attempt, so clean shutdowns never use up a
        job's ``max_attempts``. (The next claim brings the count back up, so the released
        receipt matches that delivery too: harmless, as a worker never uses a receipt it
        released.)"""
        if received:
            params = {"channel": self.sql.channel}
            self._settle("hand back jobs", self.sql.hand_back, received, params)

    def acquire(
        self, received: ReceivedMessage, job_name: str, key: str | None, limits: JobLimits
    ) -> float | None:
        """Start a limited job, or put it back until it may: one call of the schema's
        ``glasswork_acquire`` function, which takes a concurrency slot (held while the row
        is leased) and a start of the rate's sliding window by the server's clock. (Workers
        on this driver take limits in the claim instead: :meth:`limited_claims`.)"""
        row_id, attempts = received.receipt
        slots = limits.concurrency
        params = {
            "id": row_id,
            "attempts": attempts,
            "job": job_name,
            "slot": slot_key(job_name, key) if slots is not None else None,
            "slots": slots,
            "starts": limits.rate.count if limits.rate is not None else None,
            "window": limits.rate.window if limits.rate is not None else None,
            "retry": SLOT_RETRY * (1 + random.random() / 2),
        }

        def call(conn: psycopg.Connection, _: bool) -> float | None:
            row = conn.execute(self.sql.acquire, params).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return self._connections.run("start a limited job", call)

    def limited_claims(self, job_limits: Mapping[str, JobLimits]) -> LimitedClaims:
        """Claims that admit the deliveries of these limited jobs in the claim's own
        statement (see :mod:`.limits`)."""
        return LimitedClaims(self, job_limits)

    def throttle_counts(self) -> dict[str, int]:
        """Deliveries each job's limits held back, by every worker on these tables."""
        return self._connections.run(
            "count throttled jobs",
            lambda conn, _: throttle_counts(conn, self.sql.throttle_counts),
        )

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        """Keep jobs hidden for ``seconds`` more (the worker calls this for long-running jobs).
        Returns how many leases were still held."""
        if not received:
            return 0
        return self._settle("extend leases", self.sql.extend, received, {"seconds": seconds})

    def _settle(
        self, what: str, statement: str, received: Sequence[ReceivedMessage], params: dict[str, Any]
    ) -> int:
        # Matching (id, attempts) makes each of these safe to repeat after a lost connection.
        params = {
            **params,
            "ids": [r.receipt[0] for r in received],
            "attempts": [r.receipt[1] for r in received],
        }
        return self._connections.run(what, lambda conn, _: conn.execute(statement, params).rowcount)

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        job_name, job_id, _ = identify(body)
        row = tuple(storable(text) for text in (queue, job_name, job_id, body, reason, traceback))
        step = dead_end(body, reason)
        if step is None:
            self._connections.run(
                "dead-letter a job", lambda conn, _: conn.execute(self.sql.dead_letter, row)
            )
            return True

        def keep(conn: psycopg.Connection, _: bool) -> None:
            # A workflow step: its workflow learns of it with the dead letter, at once.
            with conn.transaction():
                conn.execute(self.sql.dead_letter, row)
                self.advance_workflows(conn, [step])

        self._connections.run("dead-letter a workflow step", keep)
        return True

    def claim_periodic(self, job_name: str, fire_at: datetime) -> bool:
        """Claim the firing of periodic job ``job_name`` due at ``fire_at``: True for exactly
        one caller across every worker sharing these tables."""
        row = (job_name, fire_at, uuid.uuid4().hex)
        return bool(
            self._connections.run(
                "claim a periodic job",
                lambda conn, _: conn.execute(self.sql.claim_periodic, row).rowcount == 1,
            )
        )

    def last_periodic_fire(self, job_name: str) -> datetime | None:
        """The latest claimed fire of periodic job ``job_name`` (None: never)."""
        return periodic.last_fire(self._connections, self.sql, job_name)

    def fire_periodic(
        self, job_name: str, fire_at: datetime, message: JobMessage, *, overlap: bool = True
    ) -> PeriodicFire:
        """Claim the fire and enqueue ``message`` in one transaction (see
        :class:`~glasswork.jobs.drivers.contract.PeriodicClaims`)."""
        return periodic.fire(self._connections, self.sql, job_name, fire_at, message, overlap)

    # -- inspecting ------------------------------------------------------------------------

    def stats(self) -> dict[str, QueueStats]:
        """Counts per queue, sorted by queue name."""
        return self._connections.run("count jobs", lambda conn, _: inspection.stats(conn, self.sql))

    def pending_count(self, queues: Sequence[str] | None = None) -> int:
        """Jobs not yet finished (ready, delayed or in flight) in ``queues`` (None: all)."""
        names = list(queues) if queues else None
        return self._connections.run(
            "count jobs", lambda conn, _: inspection.pending(conn, self.sql, names)
        )

    def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, oldest first (``queue`` filters)."""
        return self._connections.run(
            "list dead letters",
            lambda conn, _: inspection.list_dead(conn, self.sql, queue, limit),
        )

    def redrive(self, ids: Sequence[int | str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters back onto their queues to run again now, with a fresh attempt
        count: the given ``ids``, or all (of ``queue``, when given). A job whose unique key is
        held by a pending job stays in the dead letter. Returns how many moved."""
        return self._connections.run(
            "redrive dead letters", lambda conn, _: inspection.redrive(conn, self.sql, ids, queue)
        )

    def purge_dead_letters(
        self, ids: Sequence[int | str] | None = None, *, queue: str | None = None
    ) -> int:
        """Delete dead letters (the given ``ids``, or all; of ``queue``, when given). Returns
        how many."""
        return self._connections.run(
            "purge dead letters", lambda conn, _: inspection.purge(conn, self.sql, ids, queue)
        )

    def dead_letter_page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches, newest first, after ``cursor``; their count and
        groups come from the same snapshot."""
        return self._dead_letter_table.page(query, cursor, limit)

    def find_dead_letter(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter with this id (None: there is none, or the id is not a number)."""
        return self._dead_letter_table.find(record_id)

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back onto its queue, in one transaction;
        one whose unique key a pending job holds stays. Returns how many moved."""
        return self._dead_letter_table.redrive_matching(query)

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches; returns how many."""
        return self._dead_letter_table.purge_matching(query)

    def find_job(self, job_id: str) -> list[FoundJob]:
        """The pending and dead-lettered copies of job ``job_id``, read in one snapshot (a
        scan: job ids are not indexed, so that enqueueing pays nothing for lookups)."""
        return self._connections.run(
            "look up a job", lambda conn, _: inspection.find_job(conn, self.sql, job_id)
        )

    # -- what workers record -----------------------------------------------------------------

    def record_outcomes(self, counts: Sequence[OutcomeCount]) -> None:
        """Add outcome counts (one statement; counts of the same key add up), then drop
        minutes past ``outcome_retention``."""
        self._outcomes.record(counts, self.outcome_retention)

    def outcome_history(self, since: datetime) -> list[OutcomeCount]:
        """Outcome counts of the minutes from ``since`` on, oldest first."""
        return self._outcomes.history(since)

    def heartbeat_store(self) -> WorkerRows:
        """Where workers beat: a table in this driver's schema."""
        return self._workers


def _release(notifications: Notifications, connections: Connections) -> None:
    notifications.close()
    connections.close()


def _check(ok: bool, what: str, value: object) -> None:
    if not ok:
        raise ConfigurationError(f"{what}, got {value!r}")
