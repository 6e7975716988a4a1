"""``glasswork jobs`` and ``glasswork stats``: what the app registers, what the queues hold.

``stats`` prints one schema for every driver: ready, delayed, in flight, dead.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..jobs.drivers.contract import capabilities_of
from ..jobs.drivers.records import QueueStats
from ._common import (
    add_app_option,
    add_command,
    load_app,
    need,
    need_app,
    open_driver,
    print_table,
)
from ._options import option

#: The columns of ``stats``, in order: the fields of :class:`QueueStats`.
COLUMNS = ("ready", "delayed", "in_flight", "dead")


def register(commands: Any) -> None:
    jobs = add_command(
        commands,
        "jobs",
        "List the app's registered jobs.",
        driver=False,
        examples=[
            "glasswork jobs --app myapp.worker:AppModule",
            "GLASSWORK_APP=myapp glasswork jobs",
        ],
    )
    add_app_option(jobs)
    jobs.set_defaults(run=run_jobs)

    stats = add_command(
        commands,
        "stats",
        "Show ready, delayed, in-flight and dead jobs per queue (the same columns for every "
        "driver; SQS's counts are approximate, dead is the DLQ's depth).",
        examples=[
            "glasswork stats",
            "glasswork stats --json",
            "glasswork stats --driver 'sqs://us-east-1?queue.default=https://sqs.us-east-1"
            ".amazonaws.com/123456789012/jobs'",
        ],
    )
    option(stats, "--json", action="store_true", help="print JSON")
    stats.set_defaults(run=run_stats)


def run_jobs(args: argparse.Namespace) -> int:
    from ..jobs.execution import JobRegistry

    module = load_app(need_app(args))
    rows = []
    for job in sorted(JobRegistry.for_module(module), key=lambda j: j.name):
        retry = f"{job.retry.max_attempts} attempts" if job.retry else "no retries"
        if job.periodic:
            kind = f"periodic ({job.schedule})" if job.schedule else "periodic (EventBridge)"
        else:
            kind = "job"
        rows.append((job.name, job.queue or "default", kind, retry))
    if not rows:
        print(f"{module.name}: no jobs registered")
        return 0
    print_table(("JOB", "QUEUE", "KIND", "RETRY"), rows)
    return 0


def run_stats(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    stats = need(capabilities_of(driver).stats, driver, "report queue stats").stats()
    if args.json:
        print(json.dumps({q: _counts(s) for q, s in stats.items()}, indent=2))
        return 0
    if not stats:
        print("no jobs and no dead letters")
        return 0
    rows = [(q, *_counts(s).values()) for q, s in stats.items()]
    print_table(("QUEUE", *(c.replace("_", " ").upper() for c in COLUMNS)), rows)
    return 0


def _counts(stats: QueueStats) -> dict[str, int]:
    return {c: getattr(stats, c) for c in COLUMNS}
