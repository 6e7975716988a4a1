"""Reading AWS errors one way everywhere (no boto import: any exception may be asked)."""

from __future__ import annotations

from collections.abc import Mapping

#: DynamoDB's code for a conditional write whose condition did not hold.
CONDITION_FAILED = "ConditionalCheckFailedException"


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``InvalidParameterValue``, ...);
    "" for any other exception."""
    response = getattr(error, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
