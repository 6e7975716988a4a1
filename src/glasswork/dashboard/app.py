"""``create_app``: the dashboard as an ASGI application (Starlette, Jinja2 templates)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..jobs.execution import JobRegistry
from .dead_letter_pages import DeadLetterPages
from .driver_view import DriverView
from .job_pages import JobPages
from .security import LOOPBACK_NAMES, BasicAuth, CsrfGuard, Redactor, SecurityHeaders, redact_url
from .views import Pages

if TYPE_CHECKING:
    from ..jobs.drivers.contract import OutcomeHistory, QueueDriver
    from ..jobs.metrics.lambda_concurrency import LambdaConcurrency
    from ..modules import Module

HERE = Path(__file__).resolve().parent


def create_app(
    driver: QueueDriver,
    *,
    module: Module | None = None,
    driver_url: str | None = None,
    read_only: bool = False,
    auth: tuple[str, str] | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_NAMES,
    refresh_seconds: float = 5.0,
    csrf_token: str | None = None,
    outcomes: OutcomeHistory | None = None,
    lambdas: LambdaConcurrency | None = None,
) -> Starlette:
    """The dashboard over ``driver``; ``module`` (the app) fills the jobs page's registered
    jobs (its recent jobs come from the driver's status store).

    ``driver_url`` is shown with its password masked; ``read_only`` hides and refuses every
    action (redrive, purge, cancel); ``auth`` is ``(user, password)`` for HTTP Basic authentication;
    ``allowed_hosts`` are the ``Host`` names served (``["*"]``: any; the default, loopback
    names, suits a dashboard bound to 127.0.0.1). Serving it on a public interface without
    ``auth`` is the caller's decision: the ``glasswork dashboard`` command refuses it.
    ``outcomes`` feeds the outcome chart instead of the driver
    (:class:`~glasswork.jobs.metrics.CloudWatchOutcomes`, for Lambda workers on SQS).
    ``lambdas`` fills the workers panel of a driver that keeps no heartbeats; on SQS it
    defaults to the Lambda functions subscribed to the driver's queues
    (:class:`~glasswork.jobs.metrics.lambda_concurrency.LambdaConcurrency`).

    >>> app = create_app(SQLiteQueueDriver("jobs.db"), module=AppModule)  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8765)                     # doctest: +SKIP
    """
    redact = Redactor.for_settings(driver_url, auth[1] if auth else None)
    if lambdas is None and driver.name == "sqs":
        from ..jobs.metrics.lambda_concurrency import LambdaConcurrency

        lambdas = LambdaConcurrency.for_driver(driver)  # type: ignore[arg-type]
    pages = Pages(
        DriverView(driver, redact, outcomes, lambdas),
        _templates(),
        CsrfGuard(csrf_token),
        registry=JobRegistry.for_module(module) if module is not None else None,
        driver_label=redact(redact_url(driver_url)) if driver_url else driver.name,
        read_only=read_only,
        refresh_seconds=refresh_seconds,
    )
    dead = DeadLetterPages(pages)
    jobs = JobPages(pages)
    routes = [
        Route("/", pages.queues, name="queues"),
        Route("/fragments/queues", pages.queues_fragment, name="queues_fragment"),
        Route("/dead-letters", dead.listing, name="dead_letters"),
        Route("/dead-letters/confirm", dead.confirm, name="confirm"),
        Route("/dead-letters/confirm-all", dead.confirm_matching, name="confirm_all"),
        Route("/dead-letters/redrive", dead.redrive, methods=["POST"], name="redrive"),
        Route("/dead-letters/purge", dead.purge, methods=["POST"], name="purge"),
        Route(
            "/dead-letters/redrive-all",
            dead.redrive_matching,
            methods=["POST"],
            name="redrive_all",
        ),
        Route("/dead-letters/purge-all", dead.purge_matching, methods=["POST"], name="purge_all"),
        # ":path": a driver's ids may hold a "/" (the id is all the path has left).
        Route("/dead-letters/{record_id:path}", dead.detail, name="dead_letter"),
        Route("/jobs", jobs.listing, name="jobs"),
        Route("/jobs/cancel", jobs.cancel, methods=["POST"], name="cancel_job"),
        Route("/jobs/{job_id:path}", jobs.detail, name="job"),
        Route("/lookup", jobs.lookup, name="lookup"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # Outermost first: headers on every answer, then the host check, then authentication.
    middleware = [Middleware(SecurityHeaders)]
    if "*" not in allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    if auth is not None:
        middleware.append(Middleware(BasicAuth, user=auth[0], password=auth[1]))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: pages.http_error},
    )
    app.state.pages = pages
    return app


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its name: payloads are untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, utc=_utc, short=_short)
    return Jinja2Templates(env=env)


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "?"


def _age(moment: datetime | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h 20m``, ``2d 4h`` since ``moment`` (``in 5m`` for the future)."""
    if moment is None:
        return "?"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    ahead, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{seconds}s"
    elif seconds < 3600:
        text = f"{seconds // 60}m"
    elif seconds < 86400:
        text = f"{seconds // 3600}h {seconds % 3600 // 60}m"
    else:
        text = f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    return f"in {text}" if ahead else f"{text} ago"


def _short(text: Any, length: int = 160) -> str:
    value = text if isinstance(text, str) else json.dumps(text)
    return value if len(value) <= length else value[: length - 1] + "…"
