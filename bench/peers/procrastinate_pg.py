"""procrastinate on the same PostgreSQL server: ``task.defer`` one job at a time, workers
``app.run_worker`` in their own processes (``wait=False`` to drain, ``delete_jobs="always"``
like Glasswork's ack), with its default LISTEN/NOTIFY for the latency run.

Each run gets a schema of its own (procrastinate's tables, types and functions go where the
connection's ``search_path`` points). ``bench/postgres_queue.py`` drives these functions;
run alone: ``python bench/peers/procrastinate_pg.py [--quick]``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workload import validate_payload, wire_payload

LABEL = "procrastinate (PostgreSQL)"
NOTES = "task.defer() each; run_worker(concurrency={c}, wait=False, delete_jobs='always')"
QUEUE = "bench"


def _app(dsn: str, schema: str, on_run: Callable[[], None] = lambda: None) -> Any:
    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=dsn, kwargs={"options": f"-c search_path={schema}"}
        )
    )

    @app.task(name="bench_noop", queue=QUEUE)
    def bench_noop(payload: dict[str, Any]) -> None:
        on_run()
        validate_payload(payload)

    app.bench_task = bench_noop
    return app


def prepare(dsn: str, schema: str) -> None:
    """A fresh schema with procrastinate's tables in it."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    app = _app(dsn, schema)
    with app.open():
        app.schema_manager.apply_schema()


def producer(dsn: str, schema: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(enqueue one job, close)``: ``task.defer`` on an open app."""
    app = _app(dsn, schema)
    app.open()
    task = app.bench_task
    return (lambda: task.defer(payload=wire_payload())), app.close


def drain(dsn: str, schema: str, concurrency: int, go: Any, out: Any) -> None:
    """Process target: wait for ``go``, run jobs until none is left, report how many."""
    done = [0]

    def count() -> None:
        done[0] += 1

    app = _app(dsn, schema, count)
    out.put("ready")
    go.wait()
    app.run_worker(
        queues=[QUEUE],
        wait=False,
        concurrency=concurrency,
        delete_jobs="always",
        install_signal_handlers=False,
    )
    out.put(done[0])


def serve(dsn: str, schema: str, out: Any) -> None:
    """Process target: a waiting worker whose job reports when it starts (until SIGTERM)."""
    app = _app(dsn, schema, lambda: out.put(time.monotonic()))
    out.put("ready")
    app.run_worker(queues=[QUEUE], concurrency=1, delete_jobs="always")


if __name__ == "__main__":
    import subprocess

    sys.exit(
        subprocess.call(
            [sys.executable, str(Path(__file__).parents[1] / "postgres_queue.py"), *sys.argv[1:]],
            env={**os.environ, "BENCH_CONTENDERS": "procrastinate"},
        )
    )
