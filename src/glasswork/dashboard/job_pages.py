"""The jobs pages: the list of recent jobs by state (filters: state, job name, queue; a page
newest first, with the job id it ended with as the cursor to the next, ``before``) above the
app's registered jobs and the limits of those that have some (and how often each held
deliveries back, from the driver's throttle counts); one job (its status, progress, result,
error and traceback, and where its copies are: waiting, in flight, dead-lettered);
cancelling it, a POST carrying the CSRF token, like the dead-letter actions.

Statuses come from the driver's status store; a driver without one (or an SQS driver without
its status table) gets a note where they would be, and the rest of the pages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..jobs.drivers.records import JobState, JobStatus
from .catalog import job_rows, limit_rows
from .forms import bounded_int
from .views import Pages

logger = logging.getLogger("glasswork.dashboard")

#: The states a job may be in, in the order of its life.
STATES: tuple[str, ...] = get_args(JobState)
#: Jobs a page shows, unless asked otherwise; and the most it may be asked to show.
PAGE_SIZE = 50
MAX_PAGE = 500
#: The longest filter value read.
MAX_FIELD = 512


@dataclass(frozen=True, slots=True)
class JobFilters:
    """What the jobs list is narrowed to (None: any), and a ``problem`` with what was asked
    (a state that is no state: left out, and said so)."""

    state: str | None = None
    job: str | None = None
    queue: str | None = None
    problem: str | None = None

    @classmethod
    def read(cls, request: Request) -> JobFilters:
        def text(name: str) -> str | None:
            return (request.query_params.get(name) or "").strip()[:MAX_FIELD] or None

        state, problem = text("state"), None
        if state is not None and state not in STATES:
            state, problem = None, f"{state!r} is not a state (left out)"
        return cls(state, text("job"), text("queue"), problem)

    @property
    def active(self) -> bool:
        return any((self.state, self.job, self.queue))

    def params(self, **extra: Any) -> str:
        """These filters as a URL query, with ``extra`` fields (None: left out)."""
        pairs = {"state": self.state, "job": self.job, "queue": self.queue, **extra}
        return urlencode({k: v for k, v in pairs.items() if v is not None})


class JobPages:
    """The jobs request handlers, on the shared :class:`Pages`."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.view = pages.view

    async def listing(self, request: Request) -> Response:
        filters = JobFilters.read(request)
        before = (request.query_params.get("before") or "").strip()[:MAX_FIELD] or None
        limit = bounded_int(request.query_params.get("limit"), PAGE_SIZE, 1, MAX_PAGE)
        recent = await self.pages.section(
            self.view.job_history, filters.state, filters.job, filters.queue, limit, before
        )
        registry = self.pages.registry
        rows = job_rows(registry, datetime.now(UTC)) if registry is not None else None
        jobs = list(registry or ())
        # Only asked when the app has limited jobs, or is unknown (the counts are all there
        # is to show then).
        held_back = (
            await self.pages.section(self.view.throttle_counts)
            if registry is None or any(job.limits is not None for job in jobs)
            else None
        )
        counts = held_back.value if held_back is not None else None
        limits = limit_rows(registry, counts) if registry is not None else None
        return self.pages.render(
            request,
            "jobs.html",
            page="jobs",
            rows=rows,
            limits=limits,
            held_back=held_back,
            recent=recent,
            filters=filters,
            states=STATES,
            before=before,
            limit=limit,
            page_size=PAGE_SIZE,
            job_names=sorted(j.name for j in jobs),
            queue_names=sorted({j.queue or "default" for j in jobs}),
        )

    async def detail(self, request: Request) -> Response:
        return await self._job_page(request, request.path_params["job_id"])

    async def lookup(self, request: Request) -> Response:
        """The header's search: the page of the job it names (the form, without one)."""
        job_id = request.query_params.get("job_id", "").strip()
        if not job_id:
            return self.pages.render(request, "lookup.html", page="lookup", job_id="")
        return await self._job_page(request, job_id)

    async def _job_page(self, request: Request, job_id: str) -> Response:
        status = await self.pages.section(self.view.job_status, job_id)
        copies = await self.pages.section(self.view.find_job, job_id)
        found: JobStatus | None = status.value
        return self.pages.render(
            request,
            "job.html",
            page="jobs",
            job_id=job_id,
            status=status,
            result=copies,  # where its copies are (the lookup)
            result_json=_pretty(found.result) if found is not None else None,
            can_cancel=not self.pages.read_only and found is not None and not found.finished,
            cancelled=request.query_params.get("cancelled"),
        )

    async def cancel(self, request: Request) -> Response:
        form, refused = await self.pages.checked_form(request, "cancel")
        if refused is not None:
            return refused
        assert form is not None
        job_id = (form.get("job_id") or "").strip()
        if not job_id:
            return self.pages.refuse(request, "Which job? The form names none.", 400)
        done = await self.pages.section(self.view.cancel_job, job_id)
        if done.error is not None:
            return self.pages.render(
                request, "error.html", 502, page="jobs", title="Failed", message=done.error
            )
        logger.info("cancel of job %s: %s", job_id, "done" if done.value else "refused")
        # Quoted: a job id may hold "?", "#" or "/" (the path is unquoted before matching).
        where = request.url_for("job", job_id=quote(job_id, safe="")).path
        return RedirectResponse(f"{where}?cancelled={1 if done.value else 0}", 303)


def _pretty(result: Any) -> str | None:
    if result is None:
        return None
    return json.dumps(result, indent=2, ensure_ascii=False, sort_keys=True)
