"""``glasswork dashboard``: serve the web dashboard (the ``glasswork[dashboard]`` extra)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ..jobs.extras import needs_extra
from ._common import CommandError, add_app_option, add_command, load_app, open_driver

DEFAULT_PORT = 8765


def register(commands: Any) -> None:
    dashboard = add_command(
        commands, "dashboard", "Serve a web dashboard of queues, dead letters and jobs."
    )
    add_app_option(dashboard)
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: %(default)s); a non-loopback one needs --auth",
    )
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    dashboard.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help="require HTTP Basic authentication (default: $GLASSWORK_DASHBOARD_AUTH)",
    )
    dashboard.add_argument(
        "--read-only", action="store_true", help="show everything, change nothing"
    )
    dashboard.add_argument(
        "--refresh", type=float, default=5.0, help="seconds between live updates (default: 5)"
    )
    dashboard.add_argument(
        "--cloudwatch-namespace",
        metavar="NAMESPACE",
        help="chart outcomes from the CloudWatch metrics EMFMetrics writes in this namespace "
        "(Lambda workers; the region and endpoint are the driver's)",
    )
    dashboard.add_argument(
        "--cloudwatch-dimension",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a fixed dimension of those metrics, e.g. service=orders (repeatable)",
    )
    dashboard.add_argument("--log-level", default="INFO", help="default: INFO")
    dashboard.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with needs_extra("dashboard", "the dashboard needs {name}", CommandError):
        import uvicorn

        from ..dashboard import create_app
        from ..dashboard.security import AUTH_ENV, is_loopback, parse_credentials

    auth_text = args.auth or os.environ.get(AUTH_ENV)
    auth = parse_credentials(auth_text) if auth_text else None
    loopback = is_loopback(args.host)
    if not loopback and auth is None:
        raise CommandError(
            f"refusing to serve on {args.host}, which is not a loopback address, without "
            f"authentication: anyone who reaches it could redrive and purge jobs. Give --auth "
            f"user:password (or {AUTH_ENV}), or keep the default --host 127.0.0.1"
        )
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0-65535, got {args.port}")
    if args.refresh <= 0:
        raise CommandError(f"--refresh must be positive seconds, got {args.refresh}")
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
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        raise CommandError(f"unknown log level {args.log_level!r}; use DEBUG, INFO, WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        log_level=level,
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
        from ..jobs.metrics.cloudwatch import CloudWatchOutcomes
    return CloudWatchOutcomes(
        namespace,
        dimensions,
        region=getattr(driver, "region", None),
        endpoint_url=getattr(driver, "endpoint_url", None),
    )
