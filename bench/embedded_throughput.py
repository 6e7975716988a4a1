"""Embedded throughput: enqueue N no-op jobs, then drain them all; jobs/s, Glasswork vs peers.

Contenders, each run in a fresh process per repetition, repetitions interleaved:

* ``glasswork``: ``JobService(SQLiteQueueDriver(path)).enqueue(job, payload)`` N times, then
  ``Worker(module=..., driver=..., job_timeout="15m")`` (the defaults, timeouts on) drains
  the queue until it is empty.
* ``glasswork-many``: the same, enqueuing with one ``enqueue_many`` call.
* ``huey``: ``SqliteHuey`` (bench/peers/huey_sqlite.py).
* ``rq``: RQ ``SimpleWorker`` burst mode on Redis (bench/peers/rq_redis.py).
* ``dramatiq``: Dramatiq ``RedisBroker`` + ``Worker`` (bench/peers/dramatiq_redis.py).

Every library validates the same pydantic payload on enqueue and in the job. The headline
is the best repetition; the median is shown beside it. RQ and Dramatiq use a real Redis
server: ``$BENCH_REDIS_URL``, else a private ``redis-server`` started here on loopback.

Run: ``python bench/embedded_throughput.py [--quick] [--contenders glasswork,huey]``;
``--once N`` runs Glasswork alone once (how this script calls itself).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    EMBEDDED,
    REDIS_URL_ENV,
    Row,
    emit,
    parser,
    redis_server,
    run_json,
    skipped,
    throughput_rows,
)
from workload import PAYLOAD, Payload, noop

CONCURRENCY = 10  # the Worker's default
JOB_TIMEOUT = "15m"  # the Worker's default: timeouts on


def missing_pieces() -> str | None:
    """Why Glasswork's embedded path cannot run here yet (its driver or worker missing)."""
    import importlib.util

    for module in ("glasswork.jobs.drivers.sqlite", "glasswork.jobs.worker"):
        if importlib.util.find_spec(module) is None:
            return f"not available yet: {module} is not in this tree"
    return None


def make_worker(module: Any, driver: Any) -> Any:
    import inspect

    from glasswork.jobs import Worker

    options: dict[str, Any] = {"concurrency": CONCURRENCY}
    # The default job timeout, spelled out: every run is bounded, as in production (a
    # "before" tree from ahead of job timeouts has no such option).
    if "job_timeout" in inspect.signature(Worker).parameters:
        options["job_timeout"] = JOB_TIMEOUT
    return Worker(module=module, driver=driver, **options)


def drain(worker: Any) -> int:
    """Run the worker until the queue is empty; returns how many jobs it ran."""
    return int(worker.run_until_empty().jobs)


def run_once(n: int, workdir: Path, *, many: bool = False) -> dict[str, float]:
    from glasswork import define_module
    from glasswork.jobs import JobService, SQLiteQueueDriver, define_job

    done = [0]

    def handler(payload: Payload, ctx: Any) -> None:
        noop(payload, ctx)
        done[0] += 1

    job = define_job(name="bench-noop", handler=handler, schema=Payload)
    module = define_module("bench", jobs=[job])
    driver = SQLiteQueueDriver(str(workdir / "jobs.db"))
    service = JobService(driver)

    start = time.perf_counter()
    if many:
        service.enqueue_many(job, [PAYLOAD] * n)
    else:
        for _ in range(n):
            service.enqueue(job, PAYLOAD)
    enqueued = time.perf_counter()
    drain(make_worker(module, driver))
    drained = time.perf_counter()
    with contextlib.suppress(Exception):
        driver.close()
    if done[0] != n:
        raise RuntimeError(f"glasswork ran {done[0]} of {n} jobs")
    return {"enqueue_s": enqueued - start, "drain_s": drained - enqueued}


# -- the orchestration: one fresh process per contender per repetition -------------------


def _peer(module: str, needs_redis: bool) -> tuple[str, Path, list[str], bool, str]:
    peer = importlib.import_module(f"peers.{module}")
    return (peer.LABEL, BENCH_DIR / "peers" / f"{module}.py", [], needs_redis, peer.NOTES)


_OURS = BENCH_DIR / "embedded_throughput.py"
_DRAIN = f"Worker(concurrency={CONCURRENCY}, job_timeout={JOB_TIMEOUT!r}).run_until_empty()"
CONTENDERS: dict[str, tuple[str, Path, list[str], bool, str]] = {
    # name: (label, script, extra args, needs Redis, notes)
    "glasswork": ("Glasswork Worker (SQLite)", _OURS, [], False, f"enqueue() each; {_DRAIN}"),
    "glasswork-many": (
        "Glasswork Worker (SQLite), enqueue_many",
        _OURS,
        ["--many"],
        False,
        f"one enqueue_many(); {_DRAIN}",
    ),
    "huey": _peer("huey_sqlite", needs_redis=False),
    "rq": _peer("rq_redis", needs_redis=True),
    "dramatiq": _peer("dramatiq_redis", needs_redis=True),
}

GLASSWORK = ("glasswork", "glasswork-many")
#: Contenders run on fewer jobs to keep a full run near 10 minutes: RQ does ~400 jobs/s
#: here, and its per-job cost (a fixed number of Redis round trips) does not depend on N.
N_SCALE = {"rq": 0.25}


def jobs_for(name: str, n: int) -> int:
    return max(100, int(n * N_SCALE.get(name, 1.0)))


def run_contender(name: str, n: int, env: dict[str, str]) -> dict[str, float]:
    _, script, extra, _, _ = CONTENDERS[name]
    result: dict[str, float] = run_json(
        [sys.executable, str(script), "--once", str(n), *extra], env
    )
    return result


def measure(names: list[str], n: int, repeats: int, baseline_src: str | None = None) -> list[Row]:
    """Interleaved repetitions of every contender; ``baseline_src`` (a ``src`` directory of
    an older Glasswork) adds a "before" run of each Glasswork contender."""
    rows: list[Row] = []
    env = dict(os.environ)
    runnable: list[tuple[str, str, dict[str, str]]] = []  # (name, label, env)
    with contextlib.ExitStack() as stack:
        if any(CONTENDERS[c][3] for c in names) and REDIS_URL_ENV not in env:
            try:
                env[REDIS_URL_ENV] = stack.enter_context(redis_server())
            except RuntimeError as exc:
                for c in names:
                    if CONTENDERS[c][3]:
                        rows.append(skipped(EMBEDDED, CONTENDERS[c][0], f"Redis: {exc}"))
                names = [c for c in names if not CONTENDERS[c][3]]
        for name in names:
            label = CONTENDERS[name][0]
            if name in GLASSWORK:
                why = missing_pieces()
                if why:
                    rows.append(skipped(EMBEDDED, label, why, status="missing"))
                    continue
                if baseline_src:
                    before = dict(env, PYTHONPATH=baseline_src)
                    runnable.append((name, f"{label} (before)", before))
            runnable.append((name, label, env))
        results: dict[str, list[dict[str, float]]] = {label: [] for _, label, _ in runnable}
        failed: dict[str, str] = {}
        for _ in range(repeats):
            for name, label, run_env in runnable:
                if label in failed:
                    continue
                try:
                    results[label].append(run_contender(name, jobs_for(name, n), run_env))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    failed[label] = f"failed: {exc}"
        for name, label, _ in runnable:
            if label in failed:
                rows.append(skipped(EMBEDDED, label, failed[label], status="failed"))
            else:
                jobs = jobs_for(name, n)
                notes = f"N={jobs:,}; {CONTENDERS[name][4]}"
                rows.extend(throughput_rows(label, results[label], jobs, notes))
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--once", type=int, metavar="N", help="one Glasswork run, JSON to stdout")
    p.add_argument("--many", action="store_true", help="with --once: use enqueue_many")
    p.add_argument("--n", type=int, default=None, help="jobs per run")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--baseline-src", default=None, help="src/ of a Glasswork to compare with")
    args = p.parse_args(argv)
    if args.once:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            print(json.dumps(run_once(args.once, Path(tmp), many=args.many)))
        return 0
    n = args.n or (2000 if args.quick else 20000)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = measure(args.contenders.split(","), n, repeats, args.baseline_src)
    emit(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
