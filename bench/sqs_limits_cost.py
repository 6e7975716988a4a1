"""What flow limits cost a drain on SQS with the DynamoDB limits table, on moto, same run.

A moto server (``python -m moto.server``) is started on a free loopback port. Each drain
enqueues N no-op jobs (``enqueue_many``, not timed) on a fresh queue, then a ``Worker``
(concurrency 10) drains them (``run_until_empty``); every HTTP request of the driver's SQS
and DynamoDB clients is counted (botocore ``before-send``). Variants, interleaved repetition
by repetition:

* *no limits table*: the driver has none (no FlowLimits, no run step);
* *limits table, unlimited job beside a limited one*: the drained job has no limits, but the
  driver has the table and the module registers a limited job, so the worker has its gate
  and the driver's ``ReleaseSlots`` step wraps every run (what "an unlimited job pays
  nothing" is about);
* *rate_limit, never throttling*: ``rate_limit="1000/s"`` (far above moto's pace);
* *concurrency_limit, never throttling*: ``concurrency_limit=100`` (above the worker's 10).

The numbers are moto's (a Python server sharing the machine's cores), not DynamoDB's or
SQS's: what carries over is the requests per job; the ratios say how much of a drain the
limiter's round trips take when each costs what a moto request costs.

Run: ``python bench/sqs_limits_cost.py [--quick] [--n N] [--repeats R] [--json PATH]``.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

from _common import Row, best_and_median, emit, parser, row, skipped
from sqs_requests import REGION, missing_pieces, run_on_moto
from workload import PAYLOAD, Payload

BENCH = "sqs limits cost"
LABEL = "Glasswork SQSQueueDriver"
TABLE = "bench-limits"
#: variant -> (the drained job's define_job limits, whether the driver has the limits table)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "no limits table": ({}, False),
    "limits table, unlimited job beside a limited one": ({}, True),
    "rate_limit, never throttling": ({"rate_limit": "1000/s"}, True),
    "concurrency_limit, never throttling": ({"concurrency_limit": 100}, True),
}
BASE = "no limits table"


def measure(endpoint: str, n: int, repeats: int) -> list[Row]:
    import boto3

    from glasswork import define_module
    from glasswork.jobs import JobService, SQSQueueDriver, Worker, define_job
    from glasswork.jobs.drivers.sqs import create_limits_table

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    create_limits_table(TABLE, client=dynamodb)
    sent: Counter[str] = Counter()

    def counter(service: str) -> Any:
        def count(**kwargs: Any) -> None:  # returning None lets the request go out
            sent[service] += 1

        return count

    sqs.meta.events.register("before-send.sqs", counter("sqs"))
    dynamodb.meta.events.register("before-send.dynamodb", counter("dynamodb"))

    def drain(variant: str, rep: int) -> tuple[float, float, float]:
        limits, with_table = VARIANTS[variant]
        url = sqs.create_queue(QueueName=f"bench-{rep}-{len(sent)}-{time.monotonic_ns()}")[
            "QueueUrl"
        ]
        driver = SQSQueueDriver(
            region=REGION,
            queues={"default": url},
            client=sqs,
            dynamodb_client=dynamodb,
            limits_table=TABLE if with_table else None,
        )
        job = define_job(
            name=f"bench-noop-{rep}-{variant[:4]}",
            handler=lambda payload: None,
            schema=Payload,
            **limits,
        )
        jobs = [job]
        if with_table and not limits:
            jobs.append(define_job(name="bench-limited", handler=lambda: None, rate_limit="1/s"))
        service = JobService(driver)
        for start in range(0, n, 500):
            service.enqueue_many(job, [PAYLOAD] * min(500, n - start))
        worker = Worker(module=define_module("bench", jobs=jobs), driver=driver, concurrency=10)
        sent.clear()
        wall = time.perf_counter()
        summary = worker.run_until_empty()
        wall = time.perf_counter() - wall
        if summary.jobs != n or summary.throttled:
            raise RuntimeError(f"the worker ran {summary.jobs} of {n} jobs: {summary}")
        sqs.delete_queue(QueueUrl=url)
        return n / wall, sent["sqs"] / n, sent["dynamodb"] / n

    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    requests: dict[str, tuple[float, float]] = {}
    for rep in range(repeats):
        for variant in VARIANTS:
            per_s, sqs_per_job, ddb_per_job = drain(variant, rep)
            rates[variant].append(per_s)
            requests[variant] = (sqs_per_job, ddb_per_job)
    notes = f"N={n:,} no-op jobs, Worker(concurrency=10).run_until_empty(), moto on loopback"
    rows: list[Row] = []
    best: dict[str, float] = {}
    for variant in VARIANTS:
        best[variant], median = best_and_median(rates[variant], higher_is_better=True)
        rows.append(
            row(
                BENCH,
                f"{LABEL}: {variant}",
                "jobs/s drain",
                best[variant],
                "jobs/s",
                median=median,
                runs=repeats,
                notes=notes + " (moto's speed)",
            )
        )
        sqs_per_job, ddb_per_job = requests[variant]
        rows.append(
            row(
                BENCH,
                f"{LABEL}: {variant}",
                "SQS requests per job",
                sqs_per_job,
                "",
                runs=repeats,
                notes=notes,
            )
        )
        rows.append(
            row(
                BENCH,
                f"{LABEL}: {variant}",
                "DynamoDB requests per job",
                ddb_per_job,
                "",
                runs=repeats,
                notes=notes,
            )
        )
    for variant in VARIANTS:
        if variant != BASE:
            rows.append(
                row(
                    BENCH,
                    f"{LABEL}: {variant}",
                    "drain rate / no limits table",
                    best[variant] / best[BASE],
                    "x",
                    runs=repeats,
                    notes="bests of the same run; 1.0 means free",
                )
            )
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="jobs per drain")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args(argv)
    why = missing_pieces()
    if why:
        emit([skipped(BENCH, LABEL, why, status="missing")], args.json)
        return 0
    n = args.n or (100 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 3)
    return run_on_moto(BENCH, LABEL, args.json, lambda endpoint: measure(endpoint, n, repeats))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
