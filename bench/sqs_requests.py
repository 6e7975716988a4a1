"""SQS path: HTTP requests per job and jobs/s for ``JobService.enqueue_many``, on moto.

A moto server (``python -m moto.server``) is started on a free loopback port; the SQS
driver gets a boto3 client whose every HTTP request is counted by a botocore
``before-send`` handler. ``enqueue_many`` should send one ``SendMessageBatch`` per 10 jobs
(0.1 requests per job). ``enqueue`` one job at a time is measured beside it for scale. The
jobs/s are mostly moto's own speed (a Python server on the same 2 cores), not AWS's, so the
client's CPU time per job (this process only) is reported too.

Run: ``python bench/sqs_requests.py [--quick]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    Row,
    best_and_median,
    emit,
    free_port,
    parser,
    row,
    skipped,
    stop_process,
)
from workload import PAYLOAD, Payload, noop

BENCH = "sqs enqueue_many"
LABEL = "Glasswork SQSQueueDriver"
REGION = "us-east-1"


def missing_pieces() -> str | None:
    import importlib.util

    for module in ("glasswork.jobs.drivers.sqs", "boto3", "moto.server"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"not available yet: {module} cannot be imported"
    return None


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).read()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.05)


def run_on_moto(
    bench: str, label: str, json_path: Path | None, measure: Callable[[str], list[Row]]
) -> int:
    """Start a moto server, ``measure(endpoint)`` against it, stop it and print the rows
    (a skipped row when the server does not start)."""
    try:
        proc, endpoint = start_moto()
    except RuntimeError as exc:
        emit([skipped(bench, label, str(exc))], json_path)
        return 0
    try:
        rows = measure(endpoint)
    finally:
        stop_process(proc)
    emit(rows, json_path)
    return 0


def measure(endpoint: str, n: int, single_n: int, repeats: int) -> list[Row]:
    import boto3

    from glasswork.jobs import JobService, SQSQueueDriver, define_job

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    client = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    sent: Counter[str] = Counter()

    def count(**kwargs: Any) -> None:  # returning None lets the request go out
        sent["requests"] += 1

    client.meta.events.register("before-send.sqs", count)
    job = define_job(name="bench-noop", handler=noop, schema=Payload)

    def run(count_jobs: int, many: bool, rep: int) -> tuple[float, float, float]:
        name = f"bench-{'many' if many else 'one'}-{rep}"
        url = client.create_queue(QueueName=name)["QueueUrl"]
        driver = SQSQueueDriver(region=REGION, queues={"default": url}, client=client)
        service = JobService(driver)
        payloads = [PAYLOAD] * count_jobs
        sent.clear()
        cpu = time.process_time()  # this process only: moto's work is in its own process
        start = time.perf_counter()
        if many:
            service.enqueue_many(job, payloads)
        else:
            for p in payloads:
                service.enqueue(job, p)
        took = time.perf_counter() - start
        cpu = time.process_time() - cpu
        requests = sent["requests"]
        attrs = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        if int(attrs["ApproximateNumberOfMessages"]) != count_jobs:
            raise RuntimeError(f"the queue holds {attrs} after sending {count_jobs} jobs")
        client.delete_queue(QueueUrl=url)
        return requests / count_jobs, count_jobs / took, cpu / count_jobs * 1e6

    rows: list[Row] = []
    for many, jobs, label, method in (
        (True, n, LABEL, "enqueue_many"),
        (False, single_n, f"{LABEL}, enqueue one by one", "enqueue"),
    ):
        results = [run(jobs, many, rep) for rep in range(repeats)]
        per_job = [r[0] for r in results]
        rates = [r[1] for r in results]
        cpu_us = [r[2] for r in results]
        notes = f"{jobs:,} jobs per run with JobService.{method}, moto server on loopback"
        best, median = best_and_median(per_job, higher_is_better=False)
        rows.append(
            row(
                BENCH,
                label,
                "HTTP requests per job",
                best,
                "",
                median=median,
                runs=repeats,
                notes=notes,
            )
        )
        best, median = best_and_median(rates, higher_is_better=True)
        rows.append(
            row(
                BENCH,
                label,
                "jobs/s enqueue",
                best,
                "jobs/s",
                median=median,
                runs=repeats,
                notes=notes + " (bound by moto's speed)",
            )
        )
        best, median = best_and_median(cpu_us, higher_is_better=False)
        rows.append(
            row(
                BENCH,
                label,
                "client CPU per job",
                best,
                "µs",
                median=median,
                runs=repeats,
                notes=notes + " (CPU time of the enqueuing process only)",
            )
        )
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="jobs per enqueue_many run")
    args = p.parse_args(argv)
    why = missing_pieces()
    if why:
        emit([skipped(BENCH, LABEL, why, status="missing")], args.json)
        return 0
    n = args.n or 500  # per fresh queue: moto slows down as a queue fills
    single_n = max(50, n // 10)
    repeats = 2 if args.quick else 5
    return run_on_moto(
        BENCH, LABEL, args.json, lambda endpoint: measure(endpoint, n, single_n, repeats)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
