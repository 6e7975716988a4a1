"""The dead-letter pages: the list (filters, groups by reason, a page newest first with a
cursor to the next), one dead letter, and the actions: redrive or purge the selected ones,
or every one a search matches (a group). Every action is a GET of a confirmation page that
shows what would happen, then a POST of its form, which carries the CSRF token.

An action on a search acts on exactly what its confirmation showed: the form carries the
filters and the cursor of the newest match then (``newest``), so dead letters that arrive
later are left alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..jobs.drivers.records import PAGE_SIZE, DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from .filters import Filters, read_filters
from .forms import bounded_int, distinct_ids
from .views import Pages, Section

logger = logging.getLogger("glasswork.dashboard")

ACTIONS = {"redrive": "Redrive", "purge": "Purge"}
#: Dead letters a page may be asked to show.
MAX_PAGE = 500
#: Dead letters of a search its confirmation page shows.
SAMPLE = 10


class DeadLetterPages:
    """The dead-letter request handlers, on the shared :class:`Pages`."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.view = pages.view

    # -- reading ----------------------------------------------------------------------------

    async def listing(self, request: Request) -> Response:
        filters = read_filters(request.query_params.get)
        cursor = request.query_params.get("cursor") or None
        limit = bounded_int(request.query_params.get("limit"), PAGE_SIZE, 1, MAX_PAGE)
        page = await self.pages.section(self.view.dead_letter_page, filters.query, cursor, limit)
        registry = list(self.pages.registry or ())
        done = {
            key: bounded_int(request.query_params.get(key), None, 0, 10**9)
            for key in ("redrove", "purged", "asked")
        }
        return self.pages.render(
            request,
            "dead_letters.html",
            page="dead",
            result=page,
            filters=filters,
            cursor=cursor,
            limit=limit,
            done=done,
            can_act=not self.pages.read_only,
            job_names=sorted(j.name for j in registry),
            queue_names=sorted({j.queue or "default" for j in registry}),
        )

    async def detail(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]
        found = await self.pages.section(self.view.dead_letter, record_id)
        if found.error is None and found.value is None:
            return self.pages.render(
                request,
                "error.html",
                404,
                page="dead",
                title="Dead letter not found",
                message=f"No dead letter #{record_id}: it may have been redriven or purged.",
            )
        record: DeadLetterRecord | None = found.value
        return self.pages.render(
            request,
            "dead_letter.html",
            page="dead",
            found=found,
            record=record,
            message=_message_parts(record.body) if record else None,
            can_act=not self.pages.read_only,
        )

    # -- confirming -------------------------------------------------------------------------

    async def confirm(self, request: Request) -> Response:
        """What redriving or purging the selected dead letters would do."""
        refused = self._refusal(request, request.query_params.get("action", ""))
        if refused is not None:
            return refused
        action = request.query_params["action"]
        ids = distinct_ids(request.query_params.getlist("id"))
        if not ids:
            return self.pages.refuse(request, "Select at least one dead letter first.", 400)
        back = _back(request.query_params.get("back"))
        if len(ids) == 1:
            one = await self.pages.section(self.view.dead_letter, ids[0])
            listed = Section([one.value] if one.value else [], one.error)
        else:
            # The page the dead letters were selected on, read again.
            cursor = request.query_params.get("cursor") or None
            limit = bounded_int(request.query_params.get("limit"), PAGE_SIZE, 1, MAX_PAGE)
            page = await self.pages.section(self.view.dead_letter_page, back.query, cursor, limit)
            listed = Section(page.value.records if page.value else [], page.error)
        by_id = {r.id: r for r in listed.value or []}
        return self.pages.render(
            request,
            "confirm.html",
            page="dead",
            action=action,
            verb=ACTIONS[action],
            ids=ids,
            records=[(i, by_id.get(i)) for i in ids],
            listed=listed,
            back=back.params(drop=("newest",)),
        )

    async def confirm_matching(self, request: Request) -> Response:
        """What redriving or purging every dead letter of a search (a group) would do."""
        refused = self._refusal(request, request.query_params.get("action", ""))
        if refused is not None:
            return refused
        action = request.query_params["action"]
        filters = read_filters(request.query_params.get)
        if filters.problems:
            return self.pages.refuse(request, "; ".join(filters.problems.values()), 400)
        found = await self.pages.section(self.view.dead_letter_page, filters.query, None, SAMPLE)
        page: DeadLetterPage | None = found.value
        # Pin what is shown now, unless the link already pinned what its page showed.
        newest = filters.values.get("newest") or (page.newest if page else None)
        return self.pages.render(
            request,
            "confirm_matching.html",
            page="dead",
            action=action,
            verb=ACTIONS[action],
            filters=filters,
            found=found,
            newest=newest,
            back=_back(request.query_params.get("back")).params(drop=("newest",)),
        )

    # -- acting -----------------------------------------------------------------------------

    async def redrive(self, request: Request) -> Response:
        return await self._act(request, "redrive", self.view.redrive, "redrove")

    async def purge(self, request: Request) -> Response:
        return await self._act(request, "purge", self.view.purge, "purged")

    async def redrive_matching(self, request: Request) -> Response:
        return await self._act_on_search(request, "redrive", self.view.redrive_matching, "redrove")

    async def purge_matching(self, request: Request) -> Response:
        return await self._act_on_search(request, "purge", self.view.purge_matching, "purged")

    async def _act(
        self, request: Request, action: str, fn: Callable[[Sequence[str]], int], done: str
    ) -> Response:
        form, refused = await self.pages.checked_form(request, action)
        if refused is not None:
            return refused
        assert form is not None
        ids = distinct_ids(form.getlist("id"))
        if not ids:
            return self.pages.refuse(request, "Select at least one dead letter first.", 400)
        result = await self.pages.section(fn, ids)
        if result.error is not None:
            return self._failed(request, result.error)
        logger.info("%s: %d of %d dead letter(s) %s", action, result.value, len(ids), ids)
        return self._done(request, form.get("back"), done, result.value, len(ids))

    async def _act_on_search(
        self,
        request: Request,
        action: str,
        fn: Callable[[DeadLetterQuery], int],
        done: str,
    ) -> Response:
        form, refused = await self.pages.checked_form(request, action)
        if refused is not None:
            return refused
        assert form is not None
        filters = read_filters(form.get)
        if filters.problems:
            return self.pages.refuse(request, "; ".join(filters.problems.values()), 400)
        if filters.query.newest is None:
            # Without it, dead letters that arrived after the confirmation would go too.
            return self.pages.refuse(
                request, "The form does not say which dead letters it confirmed: reload.", 400
            )
        expected = bounded_int(form.get("expected"), 0, 0, 10**9)
        result = await self.pages.section(fn, filters.query)
        if result.error is not None:
            return self._failed(request, result.error)
        logger.info(
            "%s: %d of %d dead letter(s) matching %s",
            action,
            result.value,
            expected,
            filters.values,
        )
        return self._done(request, form.get("back"), done, result.value, expected)

    # -- helpers ----------------------------------------------------------------------------

    def _refusal(self, request: Request, action: str) -> Response | None:
        if self.pages.read_only:
            return self.pages.refuse(request, "This dashboard is read-only.")
        if action not in ACTIONS:
            return self.pages.refuse(request, "Choose redrive or purge.", 400)
        return None

    def _failed(self, request: Request, error: str) -> Response:
        return self.pages.render(
            request, "error.html", 502, page="dead", title="Failed", message=error
        )

    def _done(
        self, request: Request, back: str | None, done: str, count: int, asked: int
    ) -> Response:
        """Back to the list the action started from, saying what it did."""
        query = _back(back).params(drop=("newest",), **{done: count, "asked": asked})
        return RedirectResponse(f"{request.url_for('dead_letters').path}?{query}", 303)


def _back(text: str | None) -> Filters:
    """The filters of the list an action started from (a query string the form carried),
    read as filters: nothing else passes through."""
    fields = parse_qs(text or "", keep_blank_values=False)
    return read_filters(lambda name: next(iter(fields.get(name, [])), None))


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
