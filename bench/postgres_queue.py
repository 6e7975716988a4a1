"""PostgreSQL queue: Glasswork's PostgresQueueDriver vs PgQueuer and procrastinate on the same
server, and Glasswork's SQLite driver, in one run.

* **Throughput**: N (20,000) no-op jobs enqueued, then drained by 1 and by 2 worker
  processes; *end to end* is N / (enqueue + drain). Enqueued one call per job (each its own
  commit), and (rows marked *batch enqueue*) all N in one call. The worker processes start
  (imports, connections) before the clock does and wait for a signal, so the drain time is
  jobs, not process start-up. Glasswork: ``JobService.enqueue`` / ``enqueue_many``, then
  ``Worker(concurrency=10).run_until_empty()`` per process; PgQueuer: ``queries.enqueue``
  (one job, or lists of N), then ``PgQueuer.run(batch_size=100, mode=drain)`` per process on
  uvloop; procrastinate: ``task.defer`` (one call per job only: its drain, ~80 jobs/s, is
  most of this script's time), then ``app.run_worker(concurrency=10, wait=False)`` per
  process (bench/peers/).
* **Deadlines**: the same one-call-per-job run with 1 worker process on a Glasswork driver
  made with ``statement_timeout=0`` (no per-round-trip deadline, no watchdog), beside the
  default one: what the deadlines cost.
* **Idle latency**: a worker process waits for work; 200 jobs are enqueued one at a time,
  each after the previous one started and the worker went idle again; the latency is from
  the enqueue's return (its commit) to the handler's first line (``time.monotonic()`` is
  system-wide on Linux). Glasswork-PostgreSQL, PgQueuer and procrastinate wake on
  LISTEN/NOTIFY; the SQLite driver polls every 50 ms.

Every run uses a fresh schema (or SQLite file). Contenders run interleaved, repetition by
repetition; the headline is the best repetition, the median beside it. The server's version
and settings are printed first (and written as a row). The server: ``$BENCH_POSTGRES_DSN``,
default ``postgresql://postgres@127.0.0.1:5432/test``.

Run: ``python bench/postgres_queue.py [--quick] [--n N] [--repeats R] [--json PATH]``;
``BENCH_CONTENDERS=glasswork-pg,pgqueuer`` limits the contenders (of
glasswork-pg, glasswork-pg-nodeadline, pgqueuer, procrastinate, glasswork-sqlite).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _common import Row, best_and_median, emit, parser, row, skipped, throughput_rows
from peers import pgqueuer_pg, procrastinate_pg
from workload import PAYLOAD, Payload, noop

DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 10  # the Worker's default; procrastinate gets the same
LATENCY_JOBS = 200
# Seconds between latency jobs: the worker is back waiting by then. Random, so the jobs do
# not fall into step with a polling worker's cycle (the SQLite driver polls every 50 ms).
IDLE_GAP = (0.03, 0.09)
SETTINGS = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "max_connections",
    "work_mem",
    "checkpoint_timeout",
)
T = TypeVar("T")
THROUGHPUT = "postgres throughput"
LATENCY = "postgres idle latency"


@dataclass(frozen=True)
class Target:
    """One contender's queue for one run: ``kind`` and where its data lives (a schema name
    or a SQLite path). Picklable, so worker processes get it."""

    kind: str
    where: str


LABELS = {
    "glasswork-pg": "Glasswork PostgresQueueDriver",
    "glasswork-pg-nodeadline": "Glasswork PostgresQueueDriver, no deadlines",
    "pgqueuer": pgqueuer_pg.LABEL,
    "procrastinate": procrastinate_pg.LABEL,
    "glasswork-sqlite": "Glasswork SQLiteQueueDriver",
}

#: The throughput runs of each contender: (worker processes, all N in one enqueue call).
EACH, BATCH = False, True
PLANS: dict[str, list[tuple[int, bool]]] = {
    "glasswork-pg": [(1, EACH), (2, EACH), (1, BATCH), (2, BATCH)],
    "glasswork-pg-nodeadline": [(1, EACH)],
    "pgqueuer": [(1, EACH), (2, EACH), (1, BATCH), (2, BATCH)],
    "procrastinate": [(1, EACH), (2, EACH)],
    "glasswork-sqlite": [(1, EACH), (2, EACH), (1, BATCH), (2, BATCH)],
}
#: Contenders whose idle latency is measured.
LATENCY_KINDS = ("glasswork-pg", "pgqueuer", "procrastinate", "glasswork-sqlite")


# -- Glasswork, both drivers -----------------------------------------------------------------


def _glasswork(target: Target, on_run: Callable[[], None] = lambda: None) -> tuple[Any, Any, Any]:
    """(job, module, driver) for ``target``."""
    from glasswork import define_module
    from glasswork.jobs import define_job

    def handler(payload: Payload, ctx: Any) -> None:
        on_run()
        noop(payload, ctx)

    job = define_job(name="bench-noop", handler=handler, schema=Payload)
    return job, define_module("bench", jobs=[job]), _driver(target)


def _driver(target: Target) -> Any:
    if target.kind.startswith("glasswork-pg"):
        from glasswork.jobs import PostgresQueueDriver

        if target.kind == "glasswork-pg-nodeadline":
            return PostgresQueueDriver(DSN, schema=target.where, statement_timeout=0)
        return PostgresQueueDriver(DSN, schema=target.where)
    from glasswork.jobs import SQLiteQueueDriver

    return SQLiteQueueDriver(target.where)


def _glasswork_drain(target: Target, concurrency: int, go: Any, out: Any) -> None:
    from glasswork.jobs import Worker

    _, module, driver = _glasswork(target)
    worker = Worker(module=module, driver=driver, concurrency=concurrency)
    out.put("ready")
    go.wait()
    out.put(worker.run_until_empty().jobs)


def _glasswork_serve(target: Target, out: Any) -> None:
    from glasswork.jobs import Worker

    _, module, driver = _glasswork(target, lambda: out.put(time.monotonic()))
    worker = Worker(module=module, driver=driver, concurrency=CONCURRENCY)
    out.put("ready")
    worker.run()


# -- what each contender does ------------------------------------------------------------------


@contextmanager
def fresh(kind: str) -> Iterator[Target]:
    """A new, empty queue for one run, removed afterwards."""
    if kind == "glasswork-sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            yield Target(kind, str(Path(tmp) / "jobs.db"))
        return
    import psycopg

    schema = f"bench_{kind.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    if kind == "procrastinate":
        procrastinate_pg.prepare(DSN, schema)
    elif kind == "pgqueuer":
        pgqueuer_pg.prepare(DSN, schema)
    try:
        yield Target(kind, schema)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Producer:
    """Enqueues for one contender in this process: one call per job, or all in one."""

    def __init__(self, target: Target) -> None:
        self.target = target
        if target.kind == "pgqueuer":
            self.peer = pgqueuer_pg.Producer(DSN, target.where)
        elif target.kind == "procrastinate":
            self.one, self.close = procrastinate_pg.producer(DSN, target.where)
        else:
            from glasswork.jobs import JobService

            job, _, driver = _glasswork(target)
            service = JobService(driver)
            self.one, self.close = (lambda: service.enqueue(job, PAYLOAD)), driver.close
            self.many = lambda n: service.enqueue_many(job, [PAYLOAD] * n)

    def enqueue(self, n: int, batch: bool) -> None:
        if self.target.kind == "pgqueuer":
            (self.peer.enqueue_batch if batch else self.peer.enqueue_each)(n)
        elif batch:
            self.many(n)
        else:
            one = self.one
            for _ in range(n):
                one()

    def finish(self) -> None:
        (self.peer.close if self.target.kind == "pgqueuer" else self.close)()


def drain_target(target: Target) -> tuple[Callable[..., None], tuple[Any, ...]]:
    if target.kind == "procrastinate":
        return procrastinate_pg.drain, (DSN, target.where, CONCURRENCY)
    if target.kind == "pgqueuer":
        return pgqueuer_pg.drain, (DSN, target.where)
    return _glasswork_drain, (target, CONCURRENCY)


def serve_target(target: Target) -> tuple[Callable[..., None], tuple[Any, ...]]:
    if target.kind == "procrastinate":
        return procrastinate_pg.serve, (DSN, target.where)
    if target.kind == "pgqueuer":
        return pgqueuer_pg.serve, (DSN, target.where)
    return _glasswork_serve, (target,)


# -- the measurements --------------------------------------------------------------------------


def throughput_once(kind: str, n: int, workers: int, batch: bool) -> dict[str, float]:
    """Enqueue ``n`` jobs (one call each, or all in one ``batch``), then drain them with
    ``workers`` processes: seconds of each."""
    ctx = multiprocessing.get_context("spawn")
    with fresh(kind) as target:
        go, out = ctx.Event(), ctx.Queue()
        fn, args = drain_target(target)
        procs = [ctx.Process(target=fn, args=(*args, go, out)) for _ in range(workers)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                assert out.get(timeout=120) == "ready"
            producing = Producer(target)
            start = time.perf_counter()
            producing.enqueue(n, batch)
            enqueued = time.perf_counter()
            producing.finish()
            go.set()
            ran = sum(out.get(timeout=900) for _ in procs)
            drained = time.perf_counter()
        finally:
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
        if ran != n:
            raise RuntimeError(f"{LABELS[kind]} ran {ran} of {n} jobs with {workers} workers")
    return {"enqueue_s": enqueued - start, "drain_s": drained - enqueued}


def latency_once(kind: str, jobs: int) -> list[float]:
    """Seconds from enqueue commit to handler start, for ``jobs`` jobs sent one at a time to
    an idle worker process."""
    ctx = multiprocessing.get_context("spawn")
    with fresh(kind) as target:
        out = ctx.Queue()
        fn, args = serve_target(target)
        proc = ctx.Process(target=fn, args=(*args, out))
        proc.start()
        samples = []
        try:
            assert out.get(timeout=120) == "ready"
            producing = Producer(target)
            time.sleep(1.0)  # the worker is up and waiting
            gaps = random.Random(12).uniform
            for i in range(jobs + 10):  # the first 10 warm up connections and caches
                time.sleep(gaps(*IDLE_GAP))
                producing.enqueue(1, EACH)
                committed = time.monotonic()
                started = out.get(timeout=30)
                if i >= 10:
                    samples.append(started - committed)
            producing.finish()
        finally:
            proc.terminate()
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    return samples


def server_info() -> tuple[str, str]:
    import psycopg

    with psycopg.connect(DSN) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) "
            "ORDER BY name",
            (list(SETTINGS),),
        ).fetchall()
    return version.split(" on ")[0], ", ".join(f"{n}={v}" for n, v in settings)


def measure(kinds: list[str], n: int, repeats: int, latency_jobs: int) -> list[Row]:
    version, settings = server_info()
    print(f"server: {version}; {settings}", flush=True)
    rows = [row("postgres server", version, "settings", None, "", notes=settings)]
    runs: dict[tuple[str, int, bool], list[dict[str, float]]] = {
        (k, w, b): [] for k in kinds for w, b in PLANS[k]
    }
    lat: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    failed: dict[str, str] = {}
    for rep in range(repeats):
        for kind in kinds:
            if kind in failed:
                continue
            try:
                for workers, batch in PLANS[kind]:
                    result = _once_again_on_failure(throughput_once, kind, n, workers, batch)
                    runs[(kind, workers, batch)].append(result)
                    rate = n / (result["enqueue_s"] + result["drain_s"])
                    print(
                        f"  rep {rep + 1}: {_label(kind, workers, batch)}: {rate:,.0f} jobs/s "
                        f"(enqueue {n / result['enqueue_s']:,.0f}, "
                        f"drain {n / result['drain_s']:,.0f})",
                        flush=True,
                    )
                if kind not in LATENCY_KINDS:
                    continue
                samples = _once_again_on_failure(latency_once, kind, latency_jobs)
                p50, p99 = _percentiles(samples)
                lat[kind].append((p50, p99))
                print(
                    f"  rep {rep + 1}: {LABELS[kind]} latency p50 {p50 * 1000:.2f} ms, "
                    f"p99 {p99 * 1000:.2f} ms",
                    flush=True,
                )
            except Exception as exc:  # one contender failing must not hide the others
                failed[kind] = f"failed: {type(exc).__name__}: {exc}"
    for kind in kinds:
        if kind in failed:
            rows.append(skipped(THROUGHPUT, LABELS[kind], failed[kind], status="failed"))
            continue
        for workers, batch in PLANS[kind]:
            rows.extend(_throughput_rows(kind, workers, batch, runs[(kind, workers, batch)], n))
        if kind not in LATENCY_KINDS:
            continue
        for metric, index in (("p50 ms", 0), ("p99 ms", 1)):
            best, median = best_and_median(
                [s[index] * 1000 for s in lat[kind]], higher_is_better=False
            )
            rows.append(
                row(
                    LATENCY,
                    LABELS[kind],
                    metric,
                    best,
                    "ms",
                    median=median,
                    runs=len(lat[kind]),
                    notes=f"{latency_jobs} jobs, one at a time, worker idle",
                )
            )
    return rows


def _once_again_on_failure(run: Callable[..., T], *args: Any) -> T:
    """``run(*args)``, and once more if it fails (a peer's rare hiccup should not take all of
    its rows out of the run); the first failure is printed."""
    try:
        return run(*args)
    except Exception:
        traceback.print_exc()
        print("  (that run failed: trying it once more)", flush=True)
        return run(*args)


def _label(kind: str, workers: int, batch: bool) -> str:
    """The row label: ``<contender>[, batch enqueue], <k> worker process(es)``."""
    how = ", batch enqueue" if batch else ""
    return f"{LABELS[kind]}{how}, {workers} worker process{'es' if workers > 1 else ''}"


def _throughput_rows(
    kind: str, workers: int, batch: bool, runs: list[dict[str, float]], n: int
) -> list[Row]:
    if kind == "procrastinate":
        how = procrastinate_pg.NOTES.format(c=CONCURRENCY)
    elif kind == "pgqueuer":
        enqueue = f"enqueue() of {n:,} at once" if batch else "enqueue() each"
        how = f"{enqueue}; " + pgqueuer_pg.NOTES.format(b=pgqueuer_pg.BATCH_SIZE)
    else:
        enqueue = f"enqueue_many() of {n:,}" if batch else "enqueue() each"
        how = f"{enqueue}; Worker(concurrency={CONCURRENCY}).run_until_empty() per process"
        if kind == "glasswork-pg-nodeadline":
            how += "; statement_timeout=0"
    label = _label(kind, workers, batch)
    rows = throughput_rows(label, runs, n, f"N={n:,}; {how}")
    return [{**r, "benchmark": THROUGHPUT} for r in rows]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def ratios(rows: list[Row]) -> list[str]:
    """Glasswork-PostgreSQL against each other contender, row by row, from this run's
    headline numbers (above 1.0x: Glasswork is ahead), and what the deadlines cost."""
    value = {(r["library"], r["metric"]): r["value"] for r in rows if r["status"] == "ok"}
    ours, unbounded = LABELS["glasswork-pg"], LABELS["glasswork-pg-nodeadline"]
    lines = []
    for peer in ("pgqueuer", "procrastinate", "glasswork-sqlite"):
        for (library, metric), mine in value.items():
            if not library.startswith(ours) or library.startswith(unbounded):
                continue
            theirs = value.get((LABELS[peer] + library[len(ours) :], metric))
            if mine and theirs:
                ahead = theirs / mine if metric.endswith(" ms") else mine / theirs
                lines.append(f"{library} ÷ {LABELS[peer]}, {metric}: {ahead:.2f}x")
    metric = "jobs/s enqueue only"
    on = value.get((_label("glasswork-pg", 1, EACH), metric))
    off = value.get((_label("glasswork-pg-nodeadline", 1, EACH), metric))
    if on and off:
        lines.append(f"deadlines on ÷ off, {metric} (one call per job): {on / off:.2f}x")
    return lines


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="jobs per throughput run")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--latency-jobs", type=int, default=None)
    args = p.parse_args(argv)
    n = args.n or (2000 if args.quick else 20000)
    # procrastinate drains 20,000 jobs in about five minutes here: two repetitions already
    # make a full run of this script about 25 minutes.
    repeats = args.repeats or (1 if args.quick else 2)
    latency_jobs = args.latency_jobs or (50 if args.quick else LATENCY_JOBS)
    kinds = os.environ.get("BENCH_CONTENDERS", ",".join(LABELS)).split(",")
    rows = measure(kinds, n, repeats, latency_jobs)
    emit(rows, args.json)
    for line in ratios(rows):
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
