"""The dead-letter page's filters: read from a URL's query (or a posted form) into a
:class:`~glasswork.jobs.drivers.dead_letter_query.DeadLetterQuery`, and written back into links.

Parameters: ``queue``, ``job`` (job name), ``q`` (text in the reason), ``from`` and
``until`` (failure times, ``2024-05-01T13:00``, UTC unless an offset is given), ``reason``
(exactly this reason: a group) and ``newest`` (a cursor: none newer, so an action confirmed
on a page acts on what the page showed).

In a form the reason travels JSON-encoded (``reason_json``): browsers turn every line break
of a submitted value into CR LF, which would no longer match the reason it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from ..jobs.drivers.records import DeadLetterQuery

#: The longest text a filter field takes.
MAX_FIELD = 4096
_TEXT = {"queue": "queue", "job": "job_name", "q": "reason_contains", "reason": "reason"}
_TIMES = {"from": "failed_from", "until": "failed_until"}


@dataclass(frozen=True, slots=True)
class Filters:
    """The query, what each field said (``values``, to show them back in the form), and the
    fields that could not be read (``problems``, by field)."""

    query: DeadLetterQuery
    values: dict[str, str]
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any filter narrows the list (a ``newest`` pin alone does not)."""
        return any(v for k, v in self.values.items() if k != "newest")

    def params(self, *, drop: tuple[str, ...] = (), **extra: str | int | None) -> str:
        """These filters as a URL query (``drop`` leaves fields out; ``extra`` adds some)."""
        pairs = {k: v for k, v in self.values.items() if v and k not in drop}
        pairs.update({k: str(v) for k, v in extra.items() if v is not None and v != ""})
        return urlencode(pairs)

    def form_fields(self, *, drop: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """These filters as the hidden fields of a form (the reason JSON-encoded)."""
        return [
            ("reason_json", json.dumps(v)) if k == "reason" else (k, v)
            for k, v in self.values.items()
            if v and k not in drop
        ]

    def without(self, *names: str) -> Filters:
        """These filters without the fields ``names``."""
        values = {k: v for k, v in self.values.items() if k not in names}
        return read_filters(values.get)


def read_filters(get: Callable[[str], str | None]) -> Filters:
    """The filters ``get`` (a query's or a form's ``get``) gives; unreadable times are left
    out, and said so in ``problems``."""
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    fields: dict[str, object] = {}
    for name, attribute in _TEXT.items():
        text = (get(name) or _json_text(get(f"{name}_json")))[:MAX_FIELD]
        # A reason is matched as it is; other fields are typed, and trimmed.
        value = text if name == "reason" else text.strip()
        if value:
            values[name] = value
            fields[attribute] = value
    for name, attribute in _TIMES.items():
        text = (get(name) or "").strip()[:64]
        if not text:
            continue
        values[name] = text
        moment = _time(text)
        if moment is None:
            problems[name] = f"{text!r} is not a time: write it as 2024-05-01T13:00 (UTC)"
        else:
            fields[attribute] = moment
    newest = (get("newest") or "").strip()[:512]
    if newest:
        values["newest"] = newest
        fields["newest"] = newest
    return Filters(DeadLetterQuery(**fields), values, problems)  # type: ignore[arg-type]


def _time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json_text(encoded: str | None) -> str:
    """The text a form's ``*_json`` field encodes ('' when there is none, or not text)."""
    try:
        value = json.loads(encoded) if encoded else ""
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""
