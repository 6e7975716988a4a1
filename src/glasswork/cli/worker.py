"""``glasswork worker``: run jobs until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ._common import (
    UsageError,
    add_app_option,
    add_command,
    duration,
    grace,
    load_app,
    open_driver,
    port,
    positive_int,
    warn_unknown_queues,
)
from ._logging import LOG_FORMATS, configure_logging, log_level
from ._options import option


def register(commands: Any) -> None:
    worker = add_command(
        commands,
        "worker",
        "Run jobs until stopped (SIGTERM, SIGINT and SIGHUP stop gracefully).",
        examples=[
            "glasswork worker myapp.worker:AppModule --concurrency 8",
            "glasswork worker myapp.worker:AppModule --processes auto",
            "glasswork worker myapp.worker --driver sqlite:///jobs.db --periodic",
            "GLASSWORK_APP=myapp.worker glasswork worker --queues emails,default --until-empty",
        ],
    )
    worker.add_argument(
        "app_argument",
        nargs="?",
        metavar="APP",
        help="the app: myapp.worker:AppModule, or myapp.worker when it has one module (or --app)",
    )
    add_app_option(worker, "the app, as APP")
    option(
        worker, "--concurrency", metavar="N", type=positive_int, default=10, help="jobs run at once"
    )
    option(
        worker,
        "--processes",
        metavar="N",
        type=process_count,
        default=1,
        help="worker processes, each with --concurrency threads, under a supervisor that "
        "starts another when one dies and passes stop signals on; auto: one per core",
    )
    option(worker, "--queues", metavar="A,B", help="comma-separated queues to read (default: all)")
    option(
        worker, "--periodic", action="store_true", help="also fire periodic jobs on their schedule"
    )
    option(
        worker,
        "--grace",
        type=grace,
        metavar="DURATION",
        default=30.0,
        shown="30s",
        help="how long in-flight jobs get to finish at shutdown: 30s, 1m, seconds, 0; with "
        "--until-empty, also how far ahead to wait for retries",
    )
    option(
        worker,
        "--job-timeout",
        type=duration,
        metavar="DURATION",
        help="limit of one run of a job without its own timeout: 30s, 15m, seconds (default: 15m)",
    )
    option(
        worker,
        "--until-empty",
        action="store_true",
        help="exit once no job is ready or running (and no retry is due within --grace)",
    )
    option(
        worker,
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="serve Prometheus /metrics and a /healthz liveness check on this port "
        "(needs prometheus-client: pip install 'glasswork[prometheus]')",
    )
    option(
        worker,
        "--metrics-host",
        metavar="HOST",
        default="0.0.0.0",
        help="address for --metrics-port",
    )
    option(
        worker,
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        default="INFO",
        help="DEBUG, INFO, WARNING, ...",
    )
    option(
        worker,
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text, or json: one JSON object a line (time, level, logger, message, job fields, "
        "exception)",
    )
    worker.set_defaults(run=run)


#: Set in a child of ``--processes``: ``<supervisor pid>:<index>``.
SUPERVISED = "GLASSWORK_SUPERVISED"


def process_count(text: str) -> int:
    """argparse type: a number of processes of at least 1, or ``auto`` (one per core)."""
    if text.strip().lower() == "auto":
        from ..jobs.worker.supervisor import cpu_count

        return cpu_count()
    try:
        return positive_int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or auto, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    supervised = os.environ.get(SUPERVISED)
    configure_logging(args.log_level, args.log_format, pid=bool(supervised) or args.processes > 1)
    if supervised:  # a child of a supervisor: one worker, whatever --processes says
        pid, index = (int(part) for part in supervised.split(":"))
        return _work(args, supervisor=pid, index=index)
    if args.processes > 1:
        return _supervise(args)
    return _work(args)


def _supervise(args: argparse.Namespace) -> int:
    """``--processes N``: N copies of this very command line, each a single worker."""
    from ..jobs.worker.supervisor import Supervisor

    _app(args)  # a missing app is a usage error here, not N times over
    command = [sys.executable, "-m", "glasswork.cli", *args.argv]
    env = {**os.environ}
    supervisor = Supervisor(
        lambda index: command,
        args.processes,
        env=lambda index: {**env, SUPERVISED: f"{os.getpid()}:{index}"},
        # Past the children's grace period, time for them to release what they hold.
        kill_after=args.grace + 30.0,
    )
    return supervisor.run()


def _work(args: argparse.Namespace, *, supervisor: int | None = None, index: int = 0) -> int:
    from ..jobs.worker import DEFAULT_JOB_TIMEOUT, Worker

    module = load_app(_app(args))
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    driver = open_driver(args, queues)
    # In JSON, every line is a log record: the warning too.
    warn = logging.getLogger("glasswork.cli").warning if args.log_format == "json" else None
    warn_unknown_queues(module, driver, queues, warn)
    worker = Worker(
        module=module,
        driver=driver,
        concurrency=args.concurrency,
        queues=queues,
        periodic=args.periodic,
        grace_period=args.grace,
        job_timeout=args.job_timeout or DEFAULT_JOB_TIMEOUT,
        # Each worker process of a supervisor serves its metrics on a port of its own.
        metrics_port=args.metrics_port + index if args.metrics_port else args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if supervisor is not None:
        from ..jobs.worker.supervisor import watch_supervisor

        watch_supervisor(supervisor, worker.stop)
    if args.until_empty:
        worker.run_until_empty(retries_within=args.grace)
    else:
        worker.run()
    if worker.abandoned_threads:
        # Daemon threads: they do not hold up the exit. Their jobs were released or settled.
        logging.getLogger("glasswork.worker").warning(
            "exiting with %d abandoned handler thread(s) still running", worker.abandoned_threads
        )
    return 0


def _app(args: argparse.Namespace) -> str:
    """The app, from the argument, else ``--app`` (or ``GLASSWORK_APP``)."""
    given_twice = args.app_argument and args.app and "app" not in args.from_environment
    if given_twice and args.app_argument != args.app:
        raise UsageError(f"two apps given: {args.app_argument} and --app {args.app}; give one")
    app = args.app_argument or args.app
    if not app:
        raise UsageError(
            "worker needs the app: glasswork worker package.module:AppModule, "
            "--app package.module:AppModule or GLASSWORK_APP"
        )
    return str(app)
