"""Reading what a request sends: a form POST's fields (urlencoded, bounded), ids, numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request

#: The largest form body a POST may send (ids of the selected dead letters).
MAX_FORM_BYTES = 256 * 1024


class Form:
    """A parsed ``application/x-www-form-urlencoded`` body."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    def get(self, key: str) -> str | None:
        values = self._fields.get(key)
        return values[0] if values else None

    def getlist(self, key: str) -> list[str]:
        return self._fields.get(key, [])


async def read_form(request: Request) -> Form | None:
    """The form a POST sent, or None when it is not a form or too large."""
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
        return Form(parse_qs(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def distinct_ids(values: Sequence[str]) -> list[str]:
    """Distinct non-empty ids, in order."""
    return list(dict.fromkeys(v.strip() for v in values if v.strip()))


def bounded_int(text: str | None, default: Any, low: int, high: int) -> Any:
    """``text`` as a whole number within ``low..high``; ``default`` when it is not one."""
    try:
        return min(high, max(low, int(text))) if text else default
    except ValueError:
        return default
