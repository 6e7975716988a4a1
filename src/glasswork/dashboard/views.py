"""The dashboard's pages: queues, dead letters (list, detail, confirm, redrive, purge), jobs
and job lookup.

Pages read the driver through :class:`~glasswork.dashboard.driver_view.DriverView` in
Starlette's thread pool (driver calls block); a failing or missing capability becomes a
message on the page, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..jobs.drivers.base import DeadLetterRecord
from ..jobs.execution import JobRegistry
from .catalog import job_rows
from .charts import DepthSampler, outcome_chart
from .driver_view import DriverView, Unsupported
from .security import CsrfGuard

logger = logging.getLogger("glasswork.dashboard")
T = TypeVar("T")

#: Dead letters listed per page by default.
PAGE_SIZE = 100
#: The largest form body a POST may send (ids of the selected dead letters).
MAX_FORM_BYTES = 256 * 1024
ACTIONS = {"redrive": "Redrive", "purge": "Purge"}


@dataclass(frozen=True, slots=True)
class Section:
    """What a page shows where a driver call went: its value, or why there is none."""

    value: Any = None
    error: str | None = None


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
            return Section(error=str(exc))
        except Exception as exc:
            text = self.view.error_text(exc)
            logger.warning("driver call %s failed: %s", getattr(fn, "__name__", fn), text)
            return Section(error=text)

    def refuse(self, request: Request, reason: str, status_code: int = 403) -> Response:
        return self.render(request, "error.html", status_code, title="Refused", message=reason)

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
        return {
            "stats": stats,
            "outcomes": Section(chart, history.error),
            "outcome_source": self.view.outcome_source,
            "has_outcomes": self.view.has_outcomes,
            "depth": self.sampler.chart(),
        }

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        limit = _int(request.query_params.get("limit"), PAGE_SIZE, 1, 1000)
        records = await self.section(self.view.dead_letters, queue, limit)
        done = {
            key: _int(request.query_params.get(key), None, 0, 10**9)
            for key in ("redrove", "purged", "asked")
        }
        return self.render(
            request,
            "dead_letters.html",
            page="dead",
            records=records,
            queue=queue,
            limit=limit,
            done=done,
            can_act=not self.read_only,
        )

    async def dead_letter(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        found = await self.section(self.view.dead_letter, record_id)
        if found.error is None and found.value is None:
            return self.render(
                request,
                "error.html",
                404,
                page="dead",
                title="Dead letter not found",
                message=f"No dead letter #{record_id}: it may have been redriven or purged.",
            )
        record: DeadLetterRecord | None = found.value
        return self.render(
            request,
            "dead_letter.html",
            page="dead",
            found=found,
            record=record,
            message=_message_parts(record.body) if record else None,
            can_act=not self.read_only,
        )

    async def confirm(self, request: Request) -> Response:
        if self.read_only:
            return self.refuse(request, "This dashboard is read-only.")
        action = request.query_params.get("action", "")
        ids = _ids(request.query_params.getlist("id"))
        if action not in ACTIONS:
            return self.refuse(request, "Choose redrive or purge.", 400)
        if not ids:
            return self.refuse(request, "Select at least one dead letter first.", 400)
        listed = await self.section(self.view.dead_letters)
        by_id = {r.id: r for r in listed.value or []}
        return self.render(
            request,
            "confirm.html",
            page="dead",
            action=action,
            verb=ACTIONS[action],
            ids=ids,
            records=[(i, by_id.get(i)) for i in ids],
            listed=listed,
        )

    async def redrive(self, request: Request) -> Response:
        return await self._act(request, "redrive", self.view.redrive, "redrove")

    async def purge(self, request: Request) -> Response:
        return await self._act(request, "purge", self.view.purge, "purged")

    async def _act(
        self, request: Request, action: str, fn: Callable[[Sequence[str]], int], done: str
    ) -> Response:
        if self.read_only:
            return self.refuse(request, "This dashboard is read-only.")
        form = await _form(request)
        if form is None:
            return self.refuse(request, "The form is too large or not a form.", 400)
        problem = self.csrf.problem(form.get(CsrfGuard.FIELD), request.headers)
        if problem is not None:
            logger.warning("refused a %s request: %s", action, problem)
            return self.refuse(request, problem)
        ids = _ids(form.getlist("id"))
        if not ids:
            return self.refuse(request, "Select at least one dead letter first.", 400)
        result = await self.section(fn, ids)
        if result.error is not None:
            return self.render(
                request, "error.html", 502, page="dead", title="Failed", message=result.error
            )
        logger.info("%s: %d of %d dead letter(s) %s", action, result.value, len(ids), ids)
        query = urlencode({done: result.value, "asked": len(ids)})
        return RedirectResponse(f"{request.url_for('dead_letters').path}?{query}", 303)

    # -- jobs and lookup -------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        rows = job_rows(self.registry, datetime.now(UTC)) if self.registry is not None else None
        return self.render(request, "jobs.html", page="jobs", rows=rows)

    async def lookup(self, request: Request) -> Response:
        job_id = request.query_params.get("job_id", "").strip()
        result = await self.section(self.view.find_job, job_id) if job_id else None
        return self.render(request, "lookup.html", page="lookup", job_id=job_id, result=result)


class _Form:
    """A parsed ``application/x-www-form-urlencoded`` body."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, key: str) -> str | None:
        values = self._fields.get(key)
        return values[0] if values else None

    def getlist(self, key: str) -> list[str]:
        return self._fields.get(key, [])


async def _form(request: Request) -> _Form | None:
    # Our forms are urlencoded; reading them here spares the python-multipart dependency.
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return _Form(parse_qs(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def _ids(values: Sequence[str]) -> list[str]:
    """Distinct non-empty ids, in order."""
    return list(dict.fromkeys(v.strip() for v in values if v.strip()))


def _int(text: str | None, default: Any, low: int, high: int) -> Any:
    try:
        return min(high, max(low, int(text))) if text else default
    except ValueError:
        return default


def _message_parts(body: str) -> dict[str, Any]:
    """The pretty-printed payload and envelope of a body (``raw`` when it is not JSON)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {"raw": body}
    if not isinstance(data, dict):
        return {"raw": body}
    return {
        "payload": json.dumps(data.get("payload"), indent=2, ensure_ascii=False, sort_keys=True),
        "envelope": json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True),
    }
