"""Creating Glasswork's DynamoDB tables: on-demand billing, string keys, a TTL attribute.

Shared by :func:`~glasswork.jobs.drivers.sqs.scheduler.create_scheduler_table` and
:func:`~glasswork.jobs.idempotency.dynamodb.create_idempotency_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .errors import error_code

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def dynamodb_client(region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 DynamoDB client with standard retries."""
    return boto3.client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=BOTO_CONFIG
    )


def ensure_table(
    client: Any, table_name: str, keys: Sequence[str], ttl_attribute: str, *, wait: bool = True
) -> str:
    """Create ``table_name`` if it does not exist, keyed on the string attributes ``keys``
    (partition key, then sort key), with TTL on ``ttl_attribute``; returns its ARN.
    Safe to call again on an existing table."""
    try:
        description = client.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in keys],
            KeySchema=[
                {"AttributeName": k, "KeyType": kind}
                for k, kind in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
            BillingMode="PAY_PER_REQUEST",
        )["TableDescription"]
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
