"""Creating Glasswork's DynamoDB tables: on-demand billing, string keys, a TTL attribute,
and the global secondary indexes a table needs.

Shared by :func:`~glasswork.jobs.drivers.sqs.scheduler.create_scheduler_table`,
:func:`~glasswork.jobs.drivers.sqs.status.create_status_table` and
:func:`~glasswork.jobs.idempotency.dynamodb.create_idempotency_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .errors import error_code

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@dataclass(frozen=True)
class Index:
    """A global secondary index: ``name``, its string ``keys`` (partition key, then sort
    key) and the other attributes it holds (``projected``; empty: keys only)."""

    name: str
    keys: tuple[str, ...]
    projected: tuple[str, ...] = ()

    def definition(self) -> dict[str, Any]:
        projection: dict[str, Any] = (
            {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(self.projected)}
            if self.projected
            else {"ProjectionType": "KEYS_ONLY"}
        )
        return {
            "IndexName": self.name,
            "KeySchema": key_schema(self.keys),
            "Projection": projection,
        }


def key_schema(keys: Sequence[str]) -> list[dict[str, str]]:
    """DynamoDB's ``KeySchema`` for ``keys`` (partition key, then sort key)."""
    return [
        {"AttributeName": k, "KeyType": kind}
        for k, kind in zip(keys, ("HASH", "RANGE"), strict=False)
    ]


def dynamodb_client(region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 DynamoDB client with standard retries."""
    return boto3.client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=BOTO_CONFIG
    )


def ensure_table(
    client: Any,
    table_name: str,
    keys: Sequence[str],
    ttl_attribute: str,
    *,
    wait: bool = True,
    indexes: Sequence[Index] = (),
) -> str:
    """Create ``table_name`` if it does not exist, keyed on the string attributes ``keys``
    (partition key, then sort key), with TTL on ``ttl_attribute`` and the global secondary
    ``indexes``; returns its ARN. Safe to call again on an existing table (whose indexes
    are left as they are)."""
    attributes = dict.fromkeys([*keys, *(k for index in indexes for k in index.keys)])
    request: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in attributes],
        "KeySchema": key_schema(keys),
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        request["GlobalSecondaryIndexes"] = [index.definition() for index in indexes]
    try:
        description = client.create_table(**request)["TableDescription"]
    except ClientError as exc:
        if error_code(exc) != "ResourceInUseException":
            raise
        description = client.describe_table(TableName=table_name)["Table"]
    if wait:
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
        )
    return str(description["TableArn"])
