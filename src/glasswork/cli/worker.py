"""``glasswork worker``: run jobs until stopped."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ._common import (
    CommandError,
    add_command,
    duration,
    load_app,
    open_driver,
    positive_int,
    warn_unknown_queues,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register(commands: Any) -> None:
    worker = add_command(
        commands,
        "worker",
        "Run jobs until stopped (SIGTERM/SIGINT stop gracefully).",
        examples=[
            "glasswork worker myapp.worker:AppModule --concurrency 8",
            "glasswork worker myapp.worker --driver sqlite:///jobs.db --periodic",
            "glasswork worker myapp.worker --queues emails,default --until-empty",
        ],
    )
    worker.add_argument(
        "app", help="the app: myapp.worker:AppModule, or myapp.worker when it has one module"
    )
    worker.add_argument("--concurrency", type=positive_int, default=10, help="default: 10")
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
        "--job-timeout",
        type=duration,
        metavar="DURATION",
        help="limit of one run of a job without its own timeout: 30s, 15m, seconds (default: 15m)",
    )
    worker.add_argument(
        "--until-empty", action="store_true", help="exit once no job is ready or running"
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics and a /healthz liveness check on this port "
        "(needs prometheus-client: pip install 'glasswork[prometheus]')",
    )
    worker.add_argument(
        "--metrics-host", default="0.0.0.0", help="address for --metrics-port (default: 0.0.0.0)"
    )
    worker.add_argument("--log-level", default="INFO", help="default: INFO")
    worker.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..jobs.worker import DEFAULT_JOB_TIMEOUT, Worker

    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        raise CommandError(f"unknown log level {args.log_level!r}; use DEBUG, INFO, WARNING")
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    module = load_app(args.app)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    driver = open_driver(args)
    warn_unknown_queues(module, driver, queues)
    worker = Worker(
        module=module,
        driver=driver,
        concurrency=args.concurrency,
        queues=queues,
        periodic=args.periodic,
        grace_period=args.grace,
        job_timeout=args.job_timeout or DEFAULT_JOB_TIMEOUT,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    if args.until_empty:
        worker.run_until_empty()
    else:
        worker.run()
    if worker.abandoned_threads:
        # Daemon threads: they do not hold up the exit. Their jobs were released or settled.
        logging.getLogger("glasswork.worker").warning(
            "exiting with %d abandoned handler thread(s) still running", worker.abandoned_threads
        )
    return 0
