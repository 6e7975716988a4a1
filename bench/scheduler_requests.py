"""DynamoDB scheduler: HTTP requests per dispatched job, on moto.

N jobs are enqueued with a long delay through ``SQSQueueDriver`` (so they go to the
scheduler table), the clock is moved past their due time, and one scheduler pass
(``create_scheduler_handler``) sends them all. Every HTTP request both clients make during
the pass (the DynamoDB queries, claims and deletes; the SQS sends) is counted by a botocore
``before-send`` handler. One claim, send and delete per job is 3 requests per job; batched,
it is a claim per 100, a send per 10 and a delete per 25, plus the 8 shard queries. Each
repetition runs in a fresh process on a fresh table and queue of the same moto server.

Run: ``python bench/scheduler_requests.py [--quick] [--n 500] [--baseline-src PATH]``
(``--baseline-src``: the ``src`` directory of another Glasswork, measured beside this one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from typing import Any

from _common import Row, best_and_median, emit, parser, row, run_json, skipped
from sqs_requests import REGION, missing_pieces, run_on_moto
from workload import PAYLOAD, Payload, noop

BENCH = "scheduler dispatch"
LABEL = "Glasswork scheduler pass"


def run_once(endpoint: str, n: int, rep: int) -> dict[str, float]:
    """One pass over ``n`` due jobs; requests per job by service, and the pass's time."""
    import boto3

    from glasswork.jobs import JobService, SQSQueueDriver, define_job
    from glasswork.jobs.drivers.sqs.scheduler import (
        create_scheduler_handler,
        create_scheduler_table,
    )

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "testing")
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint)
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    table = f"bench-scheduled-{rep}-{os.getpid()}"
    create_scheduler_table(table, client=dynamodb)
    url = sqs.create_queue(QueueName=f"bench-sched-{rep}-{os.getpid()}")["QueueUrl"]
    driver = SQSQueueDriver(
        region=REGION,
        queues={"default": url},
        client=sqs,
        dynamodb_client=dynamodb,
        scheduler_table=table,
    )
    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    JobService(driver).enqueue_many(job, [PAYLOAD] * n, delay="1h")
    handler = create_scheduler_handler(
        table_name=table, driver=driver, client=dynamodb, clock=lambda: time.time() + 3700
    )
    sent: Counter[str] = Counter()

    def counter(service: str) -> Any:
        def count(**kwargs: Any) -> None:  # returning None lets the request go out
            sent[service] += 1

        return count

    dynamodb.meta.events.register("before-send.dynamodb", counter("dynamodb"))
    sqs.meta.events.register("before-send.sqs", counter("sqs"))
    cpu = time.process_time()
    start = time.perf_counter()
    result = handler({}, None)
    took = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if result["dispatched"] != n:
        raise RuntimeError(f"the pass dispatched {result} of {n} jobs")
    dynamodb.delete_table(TableName=table)
    sqs.delete_queue(QueueUrl=url)
    return {
        "dynamodb": sent["dynamodb"] / n,
        "sqs": sent["sqs"] / n,
        "jobs_per_s": n / took,
        "cpu_us": cpu / n * 1e6,
    }


def measure(endpoint: str, n: int, repeats: int, baseline_src: str | None) -> list[Row]:
    contenders = [(LABEL, dict(os.environ))]
    if baseline_src:
        contenders.insert(0, (f"{LABEL} (before)", dict(os.environ, PYTHONPATH=baseline_src)))
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _ in contenders}
    failed: dict[str, str] = {}
    for rep in range(repeats):
        for label, env in contenders:
            if label in failed:
                continue
            cmd = [sys.executable, __file__, "--once", str(n), "--endpoint", endpoint]
            try:
                results[label].append(run_json([*cmd, "--rep", str(rep)], env))
            except RuntimeError as exc:
                failed[label] = str(exc)
    rows: list[Row] = []
    notes = f"{n:,} jobs due, one pass, moto server on loopback"
    for label, _ in contenders:
        if label in failed:
            rows.append(skipped(BENCH, label, f"failed: {failed[label]}", status="failed"))
            continue
        runs = results[label]
        for metric, key, unit, better in (
            ("HTTP requests per job", None, "", False),
            ("DynamoDB requests per job", "dynamodb", "", False),
            ("SQS requests per job", "sqs", "", False),
            ("jobs/s dispatched", "jobs_per_s", "jobs/s", True),
            ("client CPU per job", "cpu_us", "µs", False),
        ):
            values = [r["dynamodb"] + r["sqs"] if key is None else r[key] for r in runs]
            best, median = best_and_median(values, higher_is_better=better)
            extra = " (bound by moto's speed)" if key == "jobs_per_s" else ""
            rows.append(
                row(
                    BENCH,
                    label,
                    metric,
                    best,
                    unit,
                    median=median,
                    runs=len(runs),
                    notes=notes + extra,
                )
            )
    return rows


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="jobs due in the pass")
    p.add_argument("--baseline-src", default=None, help="src/ of a Glasswork to compare with")
    p.add_argument("--once", type=int, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.once:
        print(json.dumps(run_once(args.endpoint, args.once, args.rep)))
        return 0
    why = missing_pieces()
    if why:
        emit([skipped(BENCH, LABEL, why, status="missing")], args.json)
        return 0
    n = args.n or (100 if args.quick else 500)
    repeats = 2 if args.quick else 3
    return run_on_moto(
        BENCH, LABEL, args.json, lambda endpoint: measure(endpoint, n, repeats, args.baseline_src)
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
