"""DynamoDB expressions written with ``#attribute`` names (no boto import)."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"[#:]\w+")


def expression(values: dict[str, Any], **parts: str) -> dict[str, Any]:
    """Request parameters for the expressions ``parts`` (``UpdateExpression=...``,
    ``ConditionExpression=...``): a name written ``#attribute`` stands for ``attribute``
    (so no reserved word gets in the way), and only the names and ``values`` the
    expressions use are sent (DynamoDB refuses a request with others)."""
    used = set(_TOKEN.findall(" ".join(parts.values())))
    request: dict[str, Any] = dict(parts)
    names = {token: token[1:] for token in sorted(used) if token.startswith("#")}
    if names:
        request["ExpressionAttributeNames"] = names
    picked = {key: value for key, value in values.items() if key in used}
    if picked:
        request["ExpressionAttributeValues"] = picked
    return request
