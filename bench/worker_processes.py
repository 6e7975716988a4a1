"""CPU-bound jobs across cores: ``glasswork worker --processes N`` with N = 1 and 2.

Each job is a pure-Python loop (about 20 ms of CPU), so one process runs one at a time
whatever its ``--concurrency`` (the GIL); only more processes use more cores. N jobs are
enqueued at once into a SQLite file where ``glasswork worker --processes P --concurrency 1``
waits, all of its processes started; every job writes when it started and ended, and the
rate is N / (last end - first start), so process start-up is not counted. The two runs
alternate, repetition by repetition; the headline is the best of each, and the scaling row
is their ratio.

Run: ``python bench/worker_processes.py [--quick] [--jobs N] [--repeats R] [--json PATH]``.
This file is also the app the workers load (``worker_processes:CpuModule``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = "worker processes (CPU-bound)"
LOOP = 400_000  # iterations of the job's loop: about 20 ms of CPU here
#: Threads per process: one, as CPU-bound jobs share a process's core whatever their number.
CONCURRENCY = 1
PROCESSES = (1, 2)


def burn(payload: dict[str, Any], ctx: Any) -> None:
    """The job: a pure-Python loop, then a line (pid, start, end) in this process's file."""
    started = time.time()
    total = 0
    for i in range(payload["loop"]):
        total += i * i
    ended = time.time()
    log = Path(os.environ["BENCH_CPU_DIR"]) / f"{os.getpid()}.log"
    with log.open("a") as out:
        out.write(f"{started} {ended}\n")


def _module() -> Any:
    from glasswork import define_module
    from glasswork.jobs import define_job

    return define_module(name="cpu", jobs=[define_job(name="burn", handler=burn)])


CpuModule = _module()


def run_once(jobs: int, processes: int) -> float:
    """Jobs per second of ``jobs`` CPU-bound jobs drained by ``processes`` worker processes."""
    from glasswork.jobs import JobService, SQLiteQueueDriver

    [burn_job] = CpuModule.jobs
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        db, runs, log = Path(tmp) / "jobs.db", Path(tmp) / "runs", Path(tmp) / "worker.log"
        runs.mkdir()
        driver = SQLiteQueueDriver(db)
        with log.open("wb") as out:
            supervisor = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "glasswork.cli",
                    "worker",
                    "worker_processes:CpuModule",
                    "--driver",
                    f"sqlite:///{db}",
                    "--processes",
                    str(processes),
                    "--concurrency",
                    str(CONCURRENCY),
                ],
                cwd=Path(__file__).resolve().parent,
                env={**os.environ, "BENCH_CPU_DIR": str(runs)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # Every process up and waiting before the jobs arrive: start-up is not measured.
            _wait(lambda: log.read_text().count("worker started") == processes, supervisor)
            JobService(driver).enqueue_many(burn_job, [{"loop": LOOP}] * jobs)
            _wait(lambda: _count_lines(runs) == jobs, supervisor)
        finally:
            supervisor.terminate()
            supervisor.wait(60)
            driver.close()
        spans = [
            tuple(map(float, line.split()))
            for path in runs.iterdir()
            for line in path.read_text().splitlines()
        ]
    return jobs / (max(end for _, end in spans) - min(start for start, _ in spans))


def _count_lines(runs: Path) -> int:
    return sum(path.read_text().count("\n") for path in runs.iterdir())


def _wait(done: Any, supervisor: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if supervisor.poll() is not None:
            raise RuntimeError(f"the supervisor exited with status {supervisor.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


def measure(jobs: int, repeats: int) -> list[dict[str, Any]]:
    from _common import best_and_median, row

    rates: dict[int, list[float]] = {p: [] for p in PROCESSES}
    for rep in range(repeats):
        for processes in PROCESSES:
            rate = run_once(jobs, processes)
            rates[processes].append(rate)
            print(f"  rep {rep + 1}: {processes} process(es): {rate:,.1f} jobs/s", flush=True)
    rows = []
    notes = f"{jobs} jobs of a {LOOP:,}-iteration Python loop; SQLite; --concurrency {CONCURRENCY}"
    for processes in PROCESSES:
        best, median = best_and_median(rates[processes], higher_is_better=True)
        label = f"Glasswork worker --processes {processes}"
        rows.append(
            row(BENCH, label, "jobs/s", best, "jobs/s", median=median, runs=repeats, notes=notes)
        )
    scaling = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    best, median = best_and_median(scaling, higher_is_better=True)
    rows.append(
        row(
            BENCH,
            "--processes 2 ÷ --processes 1",
            "scaling",
            max(rates[2]) / max(rates[1]),
            "x",
            median=median,
            runs=repeats,
            notes=f"ratio of the best runs, {os.cpu_count()} cores (median: of each repetition's)",
        )
    )
    return rows


def main(argv: list[str]) -> int:
    from _common import emit, parser

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    jobs = args.jobs or (100 if args.quick else 400)
    repeats = args.repeats or (1 if args.quick else 3)
    emit(measure(jobs, repeats), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
