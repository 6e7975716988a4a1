"""The attempts a message's job spent before it: a copy the SQS driver re-sent for a throttle
(see :mod:`.flow`) carries them in a message attribute, since its receive count starts
afresh. No AWS import: the Lambda handler reads it from its records."""

from __future__ import annotations

from typing import Any

#: The message attribute carrying the attempts a copy re-sent for a throttle spent before it
#: (see :mod:`.flow`).
ATTEMPTS_ATTRIBUTE = "GlassworkAttempts"


def attempts_before(attributes: Any) -> int:
    """The attempts spent before this message (its ``GlassworkAttempts``, 0 without one) from
    ``MessageAttributes`` as ``ReceiveMessage`` gives them or as a Lambda record has them."""
    if not attributes:
        return 0
    value = attributes.get(ATTEMPTS_ATTRIBUTE)
    if not isinstance(value, dict):
        return 0
    text: Any = value.get("StringValue", value.get("stringValue"))
    try:
        return max(0, int(text))
    except (TypeError, ValueError):
        return 0
