"""PgQueuer on the same PostgreSQL server, with the settings its docs give for throughput:
asyncpg (about 1.7x its psycopg driver, by its benchmark docs), ``uvloop`` (its benchmark
tool runs on it), ``batch_size=100`` dequeues, ``pgq autovac``'s autovacuum settings on its
tables, and its default (durable) tables. Producers ``await queries.enqueue(...)`` one job
per call, or all of them in one call (its batch form: lists of entrypoints and payloads);
workers ``PgQueuer(AsyncpgDriver(conn)).run(batch_size=100, mode=drain)`` in their own
processes, each job an ``async def`` (PgQueuer runs them as tasks, no limit set).

Each run gets a schema of its own (``PGQUEUER_SCHEMA``) and a NOTIFY channel of its own
(``PGQUEUER_PREFIX``: channels are per database, not per schema). ``bench/postgres_queue.py``
drives these functions; run alone: ``python bench/peers/pgqueuer_pg.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workload import Payload, wire_payload

LABEL = "PgQueuer (PostgreSQL)"
NOTES = "asyncpg, uvloop; run(batch_size={b}, mode=drain); pgq autovac"
ENTRYPOINT = "bench_noop"
BATCH_SIZE = 100

T = TypeVar("T")


def _configure(schema: str) -> None:
    """Point PgQueuer (its settings come from the environment, read once) at ``schema``."""
    os.environ["PGQUEUER_SCHEMA"] = schema
    os.environ["PGQUEUER_PREFIX"] = f"{schema}_"
    from pgqueuer.domain.settings import db_settings

    db_settings.cache_clear()
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)


def _loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


async def _queries(dsn: str) -> tuple[Any, Any]:
    """(PgQueuer's ``Queries``, its asyncpg connection: the driver does not close it)."""
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn=dsn)
    return Queries(AsyncpgDriver(conn)), conn


def prepare(dsn: str, schema: str) -> None:
    """A fresh schema with PgQueuer's tables (``pgq install``) and ``pgq autovac``."""
    _configure(schema)

    async def install() -> None:
        queries, conn = await _queries(dsn)
        await queries.install()
        await queries.optimize_autovacuum()
        await conn.close()

    _run(install())


def _run(work: Awaitable[T]) -> T:
    loop = _loop()
    try:
        return loop.run_until_complete(work)
    finally:
        loop.close()


class Producer:
    """Enqueues on one asyncpg connection, on a uvloop loop of its own (kept open between
    calls, as an application's would be)."""

    def __init__(self, dsn: str, schema: str) -> None:
        _configure(schema)
        self.loop = _loop()
        self.queries, self.conn = self.loop.run_until_complete(_queries(dsn))

    def enqueue_each(self, n: int) -> None:
        """``n`` jobs, one ``await queries.enqueue(...)`` each."""
        from pydantic_core import to_json

        async def each() -> None:
            enqueue = self.queries.enqueue
            for _ in range(n):
                await enqueue(ENTRYPOINT, to_json(wire_payload()))

        self.loop.run_until_complete(each())

    def enqueue_batch(self, n: int) -> None:
        """``n`` jobs in one ``await queries.enqueue([...], [...], [...])``."""
        from pydantic_core import to_json

        payloads = [to_json(wire_payload()) for _ in range(n)]
        self.loop.run_until_complete(self.queries.enqueue([ENTRYPOINT] * n, payloads, [0] * n))

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.conn.close())
        except Exception:  # asyncpg busy with a statement of its own: the socket goes anyway
            self.conn.terminate()
        self.loop.close()


def _app(dsn: str, schema: str, on_run: Callable[[], None]) -> Any:
    """(PgQueuer, its connection) with the bench job registered; call inside the loop."""
    _configure(schema)

    async def make() -> Any:
        import asyncpg
        from pgqueuer import PgQueuer
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.models import Job

        pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(dsn=dsn)))

        @pgq.entrypoint(ENTRYPOINT)
        async def bench_noop(job: Job) -> None:
            on_run()
            Payload.model_validate_json(job.payload or b"")

        return pgq

    return make()


def drain(dsn: str, schema: str, go: Any, out: Any) -> None:
    """Process target: wait for ``go``, run jobs until none is left, report how many."""
    from pgqueuer.types import QueueExecutionMode

    done = [0]

    def count() -> None:
        done[0] += 1

    loop = _loop()
    pgq = loop.run_until_complete(_app(dsn, schema, count))
    out.put("ready")
    go.wait()
    loop.run_until_complete(pgq.run(batch_size=BATCH_SIZE, mode=QueueExecutionMode.drain))
    out.put(done[0])


def serve(dsn: str, schema: str, out: Any) -> None:
    """Process target: a waiting worker whose job reports when it starts (until SIGTERM)."""
    loop = _loop()
    pgq = loop.run_until_complete(_app(dsn, schema, lambda: out.put(time.monotonic())))
    out.put("ready")
    loop.run_until_complete(pgq.run(batch_size=BATCH_SIZE))


if __name__ == "__main__":
    import subprocess

    sys.exit(
        subprocess.call(
            [sys.executable, str(Path(__file__).parents[1] / "postgres_queue.py"), *sys.argv[1:]],
            env={**os.environ, "BENCH_CONTENDERS": "glasswork-pg,pgqueuer"},
        )
    )
