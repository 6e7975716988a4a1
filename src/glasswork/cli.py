"""The ``glasswork`` command: run workers, enqueue jobs, inspect queues and dead letters.

The app is a ``module.path:ModuleName`` import path: the ``worker`` command takes it as its
first argument; ``enqueue`` and ``jobs`` take ``--app`` or the ``GLASSWORK_APP`` environment
variable. The driver is ``--driver URL`` or ``GLASSWORK_DRIVER`` (default
``sqlite:///glasswork.db``; see :mod:`glasswork.jobs.drivers.urls`). The working directory
is importable, as with ``python -m``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .jobs.drivers.urls import DEFAULT_URL, driver_from_url
from .jobs.errors import GlassworkError

if TYPE_CHECKING:
    from .jobs.drivers.base import QueueDriver
    from .modules import Module

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``glasswork`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except (CommandError, GlassworkError, ValueError) as exc:
        print(f"glasswork {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glasswork",
        description="Glasswork background jobs: workers, enqueueing, queue inspection.",
        epilog=f"Driver URLs: {DEFAULT_URL} (default), sqlite:////abs/path.db, "
        "sqs://?region=us-east-1&queue.default=<queue url>. Environment: GLASSWORK_APP, "
        "GLASSWORK_DRIVER.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--driver",
            default=os.environ.get("GLASSWORK_DRIVER", DEFAULT_URL),
            help="driver URL (default: $GLASSWORK_DRIVER or %(default)s)",
        )
        return sub

    def app_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--app",
            default=os.environ.get("GLASSWORK_APP"),
            help="the app module, e.g. myapp.worker:AppModule (default: $GLASSWORK_APP)",
        )

    worker = command("worker", "Run jobs until stopped (SIGTERM/SIGINT stop gracefully).")
    worker.add_argument("app", help="the app module, e.g. myapp.worker:AppModule")
    worker.add_argument("--concurrency", type=_positive_int, default=10, help="default: 10")
    worker.add_argument("--queues", help="comma-separated queues to read (default: all)")
    worker.add_argument(
        "--periodic", action="store_true", help="also fire periodic jobs on their schedule"
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight jobs get to finish at shutdown (default: 30)",
    )
    worker.add_argument(
        "--until-empty", action="store_true", help="exit once no job is ready or running"
    )
    worker.add_argument("--log-level", default="INFO", help="default: INFO")
    worker.set_defaults(run=_worker)

    enqueue = command("enqueue", "Validate a payload and enqueue a job.")
    enqueue.add_argument("job", help="the registered job name")
    enqueue.add_argument("payload", nargs="?", default="null", help="the payload as JSON")
    app_option(enqueue)
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument("--in", dest="delay", help="run after a delay: 30s, 10m, 1h30m")
    when.add_argument("--at", help="run at an ISO 8601 time with offset: 2026-12-01T09:00Z")
    enqueue.set_defaults(run=_enqueue)

    jobs = commands.add_parser("jobs", help="List the app's registered jobs.")
    app_option(jobs)
    jobs.set_defaults(run=_jobs)

    stats = command("stats", "Show ready, delayed, in-flight and dead jobs per queue.")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=_stats)

    dlq = command("dlq", "List, redrive or purge dead letters.")
    dlq.add_argument("action", choices=["list", "redrive", "purge"])
    dlq.add_argument("--id", dest="ids", type=int, action="append", help="a dead letter id")
    dlq.add_argument("--all", action="store_true", help="redrive or purge every dead letter")
    dlq.add_argument("--queue", help="only this queue's dead letters")
    dlq.add_argument("--limit", type=_positive_int, default=100, help="list at most this many")
    dlq.add_argument("--json", action="store_true", help="print JSON (list)")
    dlq.set_defaults(run=_dlq)
    return parser


# -- commands -----------------------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    from .jobs.worker import Worker

    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        raise CommandError(f"unknown log level {args.log_level!r}; use DEBUG, INFO, WARNING")
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    module = load_app(args.app)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    worker = Worker(
        module=module,
        driver=driver_from_url(args.driver),
        concurrency=args.concurrency,
        queues=queues,
        periodic=args.periodic,
        grace_period=args.grace,
    )
    if args.until_empty:
        worker.run_until_empty()
    else:
        worker.run()
    if worker.abandoned_threads:
        # Their jobs were released; waiting for the threads would only delay the exit.
        logging.getLogger("glasswork.worker").warning(
            "exiting with %d handler thread(s) still running", worker.abandoned_threads
        )
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


def _enqueue(args: argparse.Namespace) -> int:
    from .jobs.execution import JobRegistry
    from .jobs.service import JobService

    registry = JobRegistry.for_module(load_app(_need_app(args)))
    job = registry.get(args.job)
    if job is None:
        raise CommandError(
            f"unknown job {args.job!r}; registered jobs: {', '.join(registry.names()) or 'none'}"
        )
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise CommandError(f"the payload is not JSON ({exc}): {args.payload!r}") from None
    service = JobService(driver_from_url(args.driver))
    if args.delay:
        result = service.enqueue_in(job, payload, args.delay)
    elif args.at:
        result = service.enqueue_at(job, payload, _parse_time(args.at))
    else:
        result = service.enqueue(job, payload)
    due = f", due {result.scheduled_at.isoformat()}" if result.scheduled_at else ""
    print(
        f"enqueued {job.name} job {result.job_id} as message {result.message_id} "
        f"on queue {result.queue}{due}"
    )
    return 0


def _jobs(args: argparse.Namespace) -> int:
    from .jobs.execution import JobRegistry

    module = load_app(_need_app(args))
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
    _table(("JOB", "QUEUE", "KIND", "RETRY"), rows)
    return 0


def _stats(args: argparse.Namespace) -> int:
    driver = driver_from_url(args.driver)
    stats = {
        queue: _counts(value)
        for queue, value in _capability(driver, "stats", "report queue stats")().items()
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
    _table(("QUEUE", *(c.replace("_", " ").upper() for c in columns)), rows)
    return 0


def _dlq(args: argparse.Namespace) -> int:
    driver = driver_from_url(args.driver)
    if args.action == "list":
        records = _capability(driver, "dead_letters", "list dead letters")(
            queue=args.queue, limit=args.limit
        )
        if args.json:
            print(json.dumps([_dead_dict(r) for r in records], indent=2))
        elif not records:
            print("no dead letters")
        else:
            for r in records:
                print(
                    f"#{r.id} {r.failed_at.isoformat(timespec='seconds')} queue={r.queue} "
                    f"job={r.job_name} id={r.job_id}\n    reason: {r.reason}\n    body: "
                    f"{r.body[:300]}"
                )
        return 0
    if not args.ids and not args.all:
        raise CommandError(f"dlq {args.action} needs --id N (repeatable) or --all")
    ids = None if args.all else args.ids
    if args.action == "redrive":
        moved = _capability(driver, "redrive", "redrive dead letters")(ids, queue=args.queue)
        print(f"redrove {moved} dead letter(s)")
    else:
        if args.queue:
            raise CommandError("dlq purge takes --id or --all, not --queue")
        purged = _capability(driver, "purge_dead_letters", "purge dead letters")(ids)
        print(f"purged {purged} dead letter(s)")
    return 0


# -- helpers ------------------------------------------------------------------------------------


def load_app(path: str) -> Module:
    """Import ``package.module:ModuleName`` and return the module object it names."""
    from .modules import Module

    module_path, _, attribute = path.partition(":")
    if not module_path or not attribute:
        raise CommandError(f"the app must look like package.module:AppModule, got {path!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        imported = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        if exc.name and module_path.startswith(exc.name):
            raise CommandError(
                f"cannot import {module_path!r} (from --app/GLASSWORK_APP {path!r}): {exc}; "
                "run from the directory that contains it or put it on PYTHONPATH"
            ) from None
        raise
    target: Any = imported
    for name in attribute.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise CommandError(f"{module_path!r} has no attribute {attribute!r}") from None
    if not isinstance(target, Module):
        raise CommandError(f"{path} is {type(target).__name__}, not a module made by define_module")
    return target


def _need_app(args: argparse.Namespace) -> str:
    if not args.app:
        raise CommandError(
            f"{args.command} needs the app: --app package.module:AppModule or GLASSWORK_APP"
        )
    return str(args.app)


def _capability(driver: QueueDriver, method: str, what: str) -> Any:
    fn = getattr(driver, method, None)
    if fn is None:
        raise CommandError(f"the {driver.name} driver cannot {what}; the SQLite driver can")
    return fn


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--at {text!r} is not an ISO 8601 time like 2026-12-01T09:00Z"
        ) from None
    if when.tzinfo is None:
        raise CommandError(
            f"--at {text!r} has no UTC offset; add one, e.g. {text}Z or {text}+02:00"
        )
    return when


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(map(str, header)), *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _counts(stats: Any) -> dict[str, int]:
    if isinstance(stats, Mapping):
        return dict(stats)
    return {k: getattr(stats, k) for k in ("ready", "delayed", "in_flight", "dead")}


def _dead_dict(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "queue": record.queue,
        "job_name": record.job_name,
        "job_id": record.job_id,
        "reason": record.reason,
        "failed_at": record.failed_at.isoformat(),
        "body": record.body,
    }


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
