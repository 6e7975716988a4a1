"""The dashboard's pages: queues (with the workers panel) and the page of an error, and what
every page shares (rendering, driver calls, the checks of a form that changes something);
the dead-letter pages are :mod:`.dead_letter_pages`, the jobs pages :mod:`.job_pages`.

Pages read the driver through :class:`~glasswork.dashboard.driver_view.DriverView` in
Starlette's thread pool (driver calls block); a failing or missing capability becomes a
message on the page, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from ..jobs.execution import JobRegistry
from .charts import DepthSampler, outcome_chart
from .driver_view import DriverView, Unsupported
from .forms import Form, read_form
from .security import CsrfGuard

logger = logging.getLogger("glasswork.dashboard")
T = TypeVar("T")

#: What the page of an HTTP error says, by status.
HTTP_ERRORS = {
    404: ("Page not found", "There is no page at {path}."),
    405: (
        "Not allowed",
        "{path} does not answer a {method}: changes are made from the pages' forms.",
    ),
}


@dataclass(frozen=True, slots=True)
class Section:
    """What a page shows where a driver call went: its value, or why there is none."""

    value: Any = None
    error: str | None = None
    #: The driver lacks what the section needs: the page shows a note instead of it.
    unsupported: bool = False


class Pages:
    """The request handlers, sharing the driver view, templates and settings."""

    def __init__(
        self,
        view: DriverView,
        templates: Jinja2Templates,
        csrf: CsrfGuard,
        *,
        registry: JobRegistry | None,
        driver_label: str,
        read_only: bool,
        refresh_seconds: float,
    ) -> None:
        self.view = view
        self.templates = templates
        self.csrf = csrf
        self.registry = registry
        self.driver_label = driver_label
        self.read_only = read_only
        self.refresh_seconds = refresh_seconds
        self.sampler = DepthSampler(every=max(1.0, refresh_seconds))

    # -- helpers ---------------------------------------------------------------------------

    def render(
        self, request: Request, name: str, status_code: int = 200, **context: Any
    ) -> Response:
        context.setdefault("page", "")
        context.update(
            csrf_field=CsrfGuard.FIELD,
            csrf_token=self.csrf.token,
            read_only=self.read_only,
            driver_label=self.driver_label,
            driver_name=self.view.name,
            refresh_seconds=self.refresh_seconds,
            now=datetime.now(UTC),
        )
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    async def section(self, fn: Callable[..., T], *args: Any) -> Section:
        """Run a driver call in the thread pool; its failure becomes the section's error."""
        try:
            return Section(await run_in_threadpool(fn, *args))
        except Unsupported as exc:
            return Section(error=str(exc), unsupported=True)
        except Exception as exc:
            text = self.view.error_text(exc)
            logger.warning("driver call %s failed: %s", getattr(fn, "__name__", fn), text)
            return Section(error=text)

    def refuse(self, request: Request, reason: str, status_code: int = 403) -> Response:
        return self.render(request, "error.html", status_code, title="Refused", message=reason)

    async def checked_form(
        self, request: Request, action: str
    ) -> tuple[Form | None, Response | None]:
        """The POSTed form of ``action``, or the refusal of the request (read-only, not a
        form, no or a wrong CSRF token, another site)."""
        if self.read_only:
            return None, self.refuse(request, "This dashboard is read-only.")
        form = await read_form(request)
        if form is None:
            return None, self.refuse(request, "The form is too large or not a form.", 400)
        problem = self.csrf.problem(form.get(CsrfGuard.FIELD), request.headers)
        if problem is not None:
            logger.warning("refused a %s request: %s", action, problem)
            return None, self.refuse(request, problem)
        return form, None

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """The page of an HTTP error (an unknown address, a GET of a form's target), with
        the navigation, instead of a bare "Not Found"."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        title, text = HTTP_ERRORS.get(status, ("Error", "{path}: {detail}"))
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        message = text.format(path=request.url.path, method=request.method, detail=detail)
        return self.render(request, "error.html", status, title=title, message=message)

    # -- queues ----------------------------------------------------------------------------

    async def queues(self, request: Request) -> Response:
        return self.render(request, "queues.html", page="queues", **await self._live())

    async def queues_fragment(self, request: Request) -> Response:
        return self.render(request, "_queues_live.html", **await self._live())

    async def _live(self) -> dict[str, Any]:
        stats = await self.section(self.view.stats)
        if stats.value is not None:
            self.sampler.add(stats.value)
        now = datetime.now(UTC)
        history = await self.section(self.view.outcome_history, now - timedelta(minutes=60))
        chart = outcome_chart(history.value, now) if history.value is not None else None
        workers = await self.section(self.view.workers)
        return {
            "workers": workers,
            "stats": stats,
            "outcomes": Section(chart, history.error),
            "outcome_source": self.view.outcome_source,
            "has_outcomes": self.view.has_outcomes,
            "depth": self.sampler.chart(),
        }
