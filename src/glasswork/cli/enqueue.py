"""``glasswork enqueue``: validate a payload and enqueue a job."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import (
    CommandError,
    add_app_option,
    add_command,
    delay_seconds,
    load_app,
    need_app,
    open_driver,
    parse_time,
)
from ._options import exclusive, option


def register(commands: Any) -> None:
    enqueue = add_command(
        commands,
        "enqueue",
        "Validate a payload and enqueue a job.",
        examples=[
            'glasswork enqueue send-welcome-email \'{"user_id": "1"}\' --app myapp:AppModule',
            "glasswork enqueue daily-cleanup --in 10m --app myapp",
        ],
    )
    enqueue.add_argument("job", help="the registered job name")
    enqueue.add_argument("payload", nargs="?", default="null", help="the payload as JSON")
    add_app_option(enqueue)
    when = enqueue.add_mutually_exclusive_group()
    later = option(
        enqueue, "--in", dest="delay", group=when, help="run after a delay: 30s, 10m, 1h30m"
    )
    at = option(
        enqueue, "--at", group=when, help="run at an ISO 8601 time with offset: 2026-12-01T09:00Z"
    )
    exclusive(enqueue, [later, at])
    enqueue.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.execution import JobRegistry
    from ..jobs.service import JobService

    registry = JobRegistry.for_module(load_app(need_app(args)))
    job = registry.get(args.job)
    if job is None:
        raise CommandError(
            f"unknown job {args.job!r}; registered jobs: {', '.join(registry.names()) or 'none'}"
        )
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise CommandError(f"the payload is not JSON ({exc}): {args.payload!r}") from None
    service = JobService(open_driver(args, [job.queue or "default"]))
    delay = delay_seconds(args.delay) if args.delay else None
    at = parse_time(args.at) if args.at else None
    result = service.enqueue_raw(job, payload, delay=delay, at=at)
    due = f", due {result.scheduled_at.isoformat()}" if result.scheduled_at else ""
    print(
        f"enqueued {job.name} job {result.job_id} as message {result.message_id} "
        f"on queue {result.queue}{due}"
    )
    return 0
