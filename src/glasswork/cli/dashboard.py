"""``glasswork dashboard``: serve the web dashboard (the ``glasswork[dashboard]`` extra)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..jobs.extras import needs_extra
from ._common import (
    CommandError,
    add_app_option,
    add_command,
    duration,
    load_app,
    open_driver,
    port,
)
from ._logging import configure_logging, log_level
from ._options import option

DEFAULT_PORT = 8765


def register(commands: Any) -> None:
    dashboard = add_command(
        commands, "dashboard", "Serve a web dashboard of queues, dead letters and jobs."
    )
    add_app_option(dashboard, "the app module, for the Jobs page (e.g. myapp.worker:AppModule)")
    option(
        dashboard,
        "--host",
        default="127.0.0.1",
        help="interface to listen on; a non-loopback one needs --auth",
    )
    option(dashboard, "--port", type=port, default=DEFAULT_PORT, help="port to listen on")
    option(
        dashboard,
        "--auth",
        metavar="USER:PASSWORD",
        help="require HTTP Basic authentication",
    )
    option(dashboard, "--read-only", action="store_true", help="show everything, change nothing")
    option(
        dashboard,
        "--refresh",
        type=duration,
        metavar="DURATION",
        default=5.0,
        help="time between live updates: 5s, seconds",
    )
    option(
        dashboard,
        "--cloudwatch-namespace",
        metavar="NAMESPACE",
        help="chart outcomes from the CloudWatch metrics EMFMetrics writes in this namespace "
        "(Lambda workers; the region and endpoint are the driver's)",
    )
    option(
        dashboard,
        "--cloudwatch-dimension",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a fixed dimension of those metrics, e.g. service=orders (repeatable; in the "
        "variable, separated by spaces)",
    )
    option(dashboard, "--log-level", type=log_level, default="INFO", help="DEBUG, INFO, ...")
    dashboard.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with needs_extra("dashboard", "the dashboard needs {name}", CommandError):
        import uvicorn

        from ..dashboard import create_app
        from ..dashboard.security import AUTH_ENV, is_loopback, parse_credentials

    auth = parse_credentials(args.auth) if args.auth else None
    loopback = is_loopback(args.host)
    if not loopback and auth is None:
        raise CommandError(
            f"refusing to serve on {args.host}, which is not a loopback address, without "
            f"authentication: anyone who reaches it could redrive and purge jobs. Give --auth "
            f"user:password (or {AUTH_ENV}), or keep the default --host 127.0.0.1"
        )
    dimensions = _dimensions(args.cloudwatch_dimension)
    if dimensions and not args.cloudwatch_namespace:
        raise CommandError("--cloudwatch-dimension needs --cloudwatch-namespace")
    module = load_app(args.app) if args.app else None
    driver = open_driver(args)
    outcomes = _cloudwatch(args.cloudwatch_namespace, dimensions, driver)
    # On loopback only loopback Host names are served (no DNS rebinding); elsewhere the
    # credentials guard every request.
    host_name = f"[{args.host}]" if ":" in args.host else args.host
    allowed = ["localhost", "127.0.0.1", "[::1]", host_name] if loopback else ["*"]
    app = create_app(
        driver,
        module=module,
        driver_url=args.driver,
        read_only=args.read_only,
        auth=auth,
        allowed_hosts=allowed,
        refresh_seconds=args.refresh,
        outcomes=outcomes,
    )
    configure_logging(args.log_level)
    label = app.state.pages.driver_label
    mode = ", read-only" if args.read_only else ""
    print(
        f"glasswork dashboard: http://{host_name}:{args.port}/ (driver {label}{mode}); "
        "Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    if auth is not None and not loopback:
        print(
            "glasswork dashboard: the password travels in every request; put TLS in front "
            "of it (a reverse proxy) on any network you do not trust",
            file=sys.stderr,
        )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=logging.getLevelName(args.log_level),
        server_header=False,
        proxy_headers=False,
    )
    return 0


def _dimensions(texts: list[str]) -> dict[str, str]:
    dimensions = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise CommandError(f"--cloudwatch-dimension must look like NAME=VALUE, got {text!r}")
        dimensions[name] = value
    return dimensions


def _cloudwatch(namespace: str | None, dimensions: dict[str, str], driver: Any) -> Any:
    """The CloudWatch outcome source, in the driver's region and endpoint (None without a
    namespace)."""
    if not namespace:
        return None
    with needs_extra("sqs", "--cloudwatch-namespace needs boto3", CommandError):
        from ..jobs.drivers.sqs.driver import SQSQueueDriver
        from ..jobs.metrics.cloudwatch import CloudWatchOutcomes
    on_aws = driver if isinstance(driver, SQSQueueDriver) else None
    return CloudWatchOutcomes(
        namespace,
        dimensions,
        region=on_aws.region if on_aws is not None else None,
        endpoint_url=on_aws.endpoint_url if on_aws is not None else None,
    )
