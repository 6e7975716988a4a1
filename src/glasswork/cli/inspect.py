"""``glasswork jobs`` and ``glasswork stats``: what the app registers, what the queues hold."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from ._common import (
    add_app_option,
    add_command,
    capability,
    load_app,
    need_app,
    open_driver,
    print_table,
)


def register(commands: Any) -> None:
    jobs = add_command(commands, "jobs", "List the app's registered jobs.", driver=False)
    add_app_option(jobs)
    jobs.set_defaults(run=run_jobs)

    stats = add_command(
        commands, "stats", "Show ready, delayed, in-flight and dead jobs per queue."
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
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
    stats = {
        queue: _counts(value)
        for queue, value in capability(driver, "stats", "report queue stats")().items()
    }
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    if not stats:
        print("no jobs and no dead letters")
        return 0
    # Drivers count different things (SQS: visible, in_flight, delayed): show what they give.
    columns = list(dict.fromkeys(k for counts in stats.values() for k in counts))
    rows = [(q, *(counts.get(c, "") for c in columns)) for q, counts in stats.items()]
    print_table(("QUEUE", *(c.replace("_", " ").upper() for c in columns)), rows)
    return 0


def _counts(stats: Any) -> dict[str, int]:
    if isinstance(stats, Mapping):
        return dict(stats)
    return {k: getattr(stats, k) for k in ("ready", "delayed", "in_flight", "dead")}
