"""``glasswork status``, ``glasswork cancel`` and ``glasswork history``: follow jobs through
their life, as the driver's status store keeps it (SQLite, PostgreSQL, SQS with a status
table, the mock).

``status`` and ``history`` only read; ``cancel`` changes one job. None of them creates a
database, schema or table. A driver that keeps no statuses is a one-line usage error saying
how to get one (exit 2); an unknown job, or one that cannot be cancelled, a one-line error
(exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar, get_args

from ..jobs.drivers.contract import QueueDriver, StatusStore
from ..jobs.drivers.records import JobState, JobStatus
from ..jobs.errors import StatusUnavailableError
from ..jobs.following import status_store
from ._common import (
    CommandError,
    UsageError,
    add_command,
    age,
    open_driver,
    positive_int,
    print_table,
)
from ._options import option

T = TypeVar("T")

#: Every state a job may be in, in the order of its life.
STATES: tuple[str, ...] = get_args(JobState)
#: How much of an error a ``history`` row shows.
ERROR_WIDTH = 60


def register(commands: Any) -> None:
    status = add_command(
        commands,
        "status",
        "Show a job's status: state, attempts, progress, result, error and traceback.",
        examples=[
            "glasswork status 3f0c9a2e5b8d4c1e9f7a6b5c4d3e2f10",
            "glasswork status 3f0c9a2e5b8d4c1e9f7a6b5c4d3e2f10 --json | jq .result",
        ],
    )
    status.add_argument("job_id", metavar="JOB_ID", help="the job id enqueue returned")
    option(status, "--json", action="store_true", help="print JSON (every field)")
    status.set_defaults(run=run_status)

    cancel = add_command(
        commands,
        "cancel",
        "Cancel a job: a waiting one never runs, a running one is asked to stop. Exit 1 "
        "when the job is unknown or has already ended.",
        examples=["glasswork cancel 3f0c9a2e5b8d4c1e9f7a6b5c4d3e2f10 --reason 'order refunded'"],
    )
    cancel.add_argument("job_id", metavar="JOB_ID", help="the job id enqueue returned")
    option(
        cancel,
        "--reason",
        default="cancelled",
        help="why: the cancelled job's error, as status shows it",
    )
    cancel.set_defaults(run=run_cancel)

    history = add_command(
        commands,
        "history",
        "List jobs newest first (by their last change), as the driver keeps them: waiting, "
        "running and ended ones (ended ones for their result_ttl).",
        examples=[
            "glasswork history --state dead",
            "glasswork history --job send-receipt --queue emails --limit 20",
            "glasswork history --json | jq '.[].job_id'",
        ],
    )
    option(history, "--state", choices=STATES, help="only jobs in this state")
    option(history, "--job", metavar="NAME", help="only jobs of this name")
    option(history, "--queue", help="only this queue's jobs")
    option(history, "--limit", metavar="N", type=positive_int, default=50, help="at most this many")
    option(
        history,
        "--before",
        metavar="JOB_ID",
        help="the page after this job (the last one a previous page listed)",
    )
    option(history, "--json", action="store_true", help="print JSON, every field of each job")
    history.set_defaults(run=run_history)


def run_status(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    found = _call(driver, lambda store: store.job_status(args.job_id))
    if found is None:
        raise CommandError(_unknown(args.job_id))
    if args.json:
        print(json.dumps(as_dict(found), indent=2, ensure_ascii=False))
    else:
        _print_status(found)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    job_id = args.job_id
    cancelled = _call(driver, lambda store: store.cancel(job_id, args.reason))
    now = _call(driver, lambda store: store.job_status(job_id))
    if not cancelled:
        if now is None:
            raise CommandError(f"not cancelled: {_unknown(job_id)}")
        raise CommandError(f"not cancelled: job {job_id} has already ended ({now.state})")
    if now is not None and now.state == "running":
        print(f"job {job_id} is running: its worker was asked to stop it")
    else:
        print(f"cancelled job {job_id}: it will not run")
    return 0


def run_history(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    jobs = _call(
        driver,
        lambda store: store.job_history(
            state=args.state,
            job_name=args.job,
            queue=args.queue,
            limit=args.limit,
            before=args.before,
        ),
    )
    if args.json:
        print(json.dumps([as_dict(s) for s in jobs], indent=2, ensure_ascii=False))
        return 0
    if not jobs:
        print("no jobs" + (" before that one" if args.before else ""))
        return 0
    rows = [
        (
            s.job_id,
            s.job_name,
            s.queue,
            s.state,
            s.attempts,
            _progress(s),
            age(s.updated_at),
            _short(s.error),
        )
        for s in jobs
    ]
    print_table(
        ("JOB ID", "JOB", "QUEUE", "STATE", "ATTEMPTS", "PROGRESS", "UPDATED", "ERROR"), rows
    )
    if len(jobs) == args.limit:
        # On stderr: the table on stdout stays a table for the commands it is piped to.
        print(f"(older ones: --before {jobs[-1].job_id})", file=sys.stderr)
    return 0


def as_dict(status: JobStatus) -> dict[str, Any]:
    """Every field of ``status`` as JSON values (times in ISO 8601), and ``finished``."""
    data: dict[str, Any] = {}
    for f in fields(status):
        value = getattr(status, f.name)
        data[f.name] = value.isoformat() if isinstance(value, datetime) else value
    data["finished"] = status.finished
    return data


# -- helpers -------------------------------------------------------------------------------


def _call(driver: QueueDriver, fn: Callable[[StatusStore], T]) -> T:
    """``fn(store)`` on the driver's status store; a driver that keeps none (or an SQS
    driver without its status table) is a :class:`UsageError` saying how to get one."""
    try:
        return fn(status_store(driver))
    except StatusUnavailableError as exc:
        raise UsageError(str(exc)) from exc


def _unknown(job_id: str) -> str:
    return (
        f"no job {job_id} here: never enqueued through this driver, or it ended longer ago "
        "than its result_ttl keeps it"
    )


def _print_status(s: JobStatus) -> None:
    facts: list[tuple[str, Any]] = [
        ("job id", s.job_id),
        ("job", s.job_name),
        ("queue", s.queue),
        ("state", s.state),
        ("attempts", s.attempts),
    ]
    if s.priority:
        facts.append(("priority", s.priority))
    if s.progress is not None or s.progress_note:
        facts.append(("progress", _progress(s, note=True)))
    facts.append(("enqueued", _when(s.enqueued_at)))
    facts.append(("updated", _when(s.updated_at)))
    if s.result is not None:
        facts.append(("result", json.dumps(s.result, ensure_ascii=False)))
    if s.error is not None:
        facts.append(("error", s.error))
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        lines = str(value).splitlines() or [""]
        print(f"{name.ljust(width)}  {lines[0]}")
        for line in lines[1:]:
            print(f"{' ' * width}  {line}")
    if s.traceback:
        print("traceback:")
        for line in s.traceback.rstrip("\n").splitlines():
            print(f"  {line}")


def _progress(s: JobStatus, note: bool = False) -> str:
    shown = f"{s.progress:.0%}" if s.progress is not None else "-"
    if note and s.progress_note:
        shown = f"{shown} {s.progress_note}" if s.progress is not None else s.progress_note
    return shown


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return f"{moment.isoformat(timespec='seconds')} ({age(moment)} ago)"


def _short(text: str | None) -> str:
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"
