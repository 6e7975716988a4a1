"""Flow limits in PostgreSQL, by the schema's functions (:mod:`.schema`, versions 6 and 7),
on the server's clock (``clock_timestamp()``), so workers whose machines' clocks disagree
still agree on every window.

* In the claim (:class:`LimitedClaims`, :class:`~glasswork.jobs.drivers.contract.ClaimLimits`):
  the claim statement of a worker whose jobs have limits picks and locks rows as the plain
  claim does, then hands their ids to ``glasswork_claim_limited`` in the same statement,
  which reads the concurrency keys of the limited ones from their bodies, takes an advisory
  lock per slot and per rate-limited job (in a fixed order), counts, leases the rows that
  may start (a slot's key on those that take one, each start logged) and puts back those
  that may not, counting them in ``glasswork_throttles``. One round trip per claim, as
  before; none per start.
* One delivery at a time (``glasswork_acquire``, :meth:`FlowLimits.acquire`), for callers
  that claim without limits.

A slot is held while its row is leased with the slot's ``slot_key`` (free once the row is
settled, or its lease has run out); a rate is a sliding log of starts
(``glasswork_rate_starts``), so no window of its length ever holds more than its count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import psycopg

from ...limits import SLOT_RETRY, JobLimits
from ..records import LimitedBatch, ReceivedMessage
from .claims import deliver
from .statements import Statements
from .status import StatusStatements

#: One claim: (connection, queues or None, limit, rotation) -> deliveries.
Claim = Callable[[psycopg.Connection, list[str] | None, int, int], list[ReceivedMessage]]


class _Driver(Protocol):
    """What the claims use of the driver, read each time (they may change on the instance)."""

    sql: Statements
    status_sql: StatusStatements
    visibility_timeout: float
    max_lost_leases: int

    def _receive_with(
        self,
        queues: Sequence[str] | None,
        max_messages: int,
        wait_seconds: float,
        claim: Claim,
        done: Callable[[], bool] = ...,
    ) -> list[ReceivedMessage]: ...


class LimitedClaims:
    """:class:`~glasswork.jobs.drivers.contract.LimitedClaims` on ``driver``'s tables, for a
    worker whose jobs have ``job_limits``."""

    def __init__(self, driver: _Driver, job_limits: Mapping[str, JobLimits]) -> None:
        self.driver = driver
        names = sorted(job_limits)
        limits = [job_limits[name] for name in names]
        # The function's arrays, one entry per limited job (NULL: no such limit).
        self.params = {
            "jobs": names,
            "slots": [lim.concurrency for lim in limits],
            "starts": [lim.rate.count if lim.rate is not None else None for lim in limits],
            "windows": [lim.rate.window if lim.rate is not None else None for lim in limits],
            "retry": SLOT_RETRY,
        }

    def claim(
        self,
        queues: Sequence[str] | None,
        max_messages: int,
        wait_seconds: float,
        max_limited: int,
    ) -> LimitedBatch:
        """See :meth:`~glasswork.jobs.drivers.contract.LimitedClaims.claim`; waits as
        :meth:`PostgresQueueDriver.receive` does."""
        throttled: Counter[tuple[str, str]] = Counter()
        counts = [0, 0]  # the last claim's limited deliveries, and those it left

        def claim(
            conn: psycopg.Connection, names: list[str] | None, limit: int, rotation: int
        ) -> list[ReceivedMessage]:
            received, counts[0], counts[1] = self._claim(
                conn, names, limit, rotation, max_limited, throttled
            )
            return received

        # Rows left for want of threads end a wait: the worker has none to give them.
        received = self.driver._receive_with(
            queues, max_messages, wait_seconds, claim, lambda: counts[1] > 0
        )
        return LimitedBatch(received, counts[0] if received else 0, dict(throttled), counts[1])

    def _claim(
        self,
        conn: psycopg.Connection,
        queues: list[str] | None,
        limit: int,
        rotation: int,
        max_limited: int,
        throttled: Counter[tuple[str, str]],
    ) -> tuple[list[ReceivedMessage], int, int]:
        driver = self.driver
        sql = driver.sql
        statement = sql.claim_limited_all if queues is None else sql.claim_limited_listed
        lease = driver.visibility_timeout
        params = {
            **self.params,
            "queues": queues,
            "limit": limit,
            "rotation": rotation,
            "lease": lease,
            "admit": max(0, max_limited),
            "max_lost": driver.max_lost_leases,
        }
        first: list[tuple[int, ReceivedMessage]] = []
        rest: list[tuple[int, int, ReceivedMessage]] = []
        left = 0
        rows: list[Any] = conn.execute(statement, params).fetchall()
        for row in rows:
            kind, order = row[8], row[9]
            if kind == "throttled":
                throttled[(row[7], row[1])] += 1
                continue
            if kind == "left":
                left += order  # how many, in one row
                continue
            message = deliver(conn, sql, driver.status_sql, row, lease, driver.max_lost_leases)
            if message is None:
                continue
            if kind == "limited":
                first.append((order, message))
            else:
                rest.append((-row[5], row[0], message))
        first.sort(key=lambda entry: entry[0])
        rest.sort(key=lambda entry: entry[:2])
        return [m for _, m in first] + [m for *_, m in rest], len(first), left


def throttle_counts(conn: psycopg.Connection, statement: str) -> dict[str, int]:
    """See :meth:`FlowLimits.throttle_counts`."""
    return {str(name): int(count) for name, count in conn.execute(statement).fetchall()}
