"""DynamoDBIdempotencyStore: keys in a DynamoDB table, shared by every Lambda and worker.

Table (see ``docs/sqs.md``): partition key ``id`` (S); ``status`` (S), ``expires_at`` (N,
epoch seconds, what conditions compare), ``token`` (S), and ``ttl`` (N, whole epoch
seconds: the table's TTL attribute, so DynamoDB deletes lapsed records). A claim is one
conditional ``PutItem``; complete and release are conditional on the claim's token.
"""

from __future__ import annotations

import math
import time
from typing import Any

from botocore.exceptions import ClientError

from ..aws.errors import CONDITION_FAILED, error_code
from ..aws.tables import dynamodb_client, ensure_table
from .store import COMPLETED, IN_PROGRESS, IdempotencyRecord, IdempotencyStore

#: The table's TTL attribute.
TTL_ATTRIBUTE = "ttl"


class DynamoDBIdempotencyStore(IdempotencyStore):
    """Idempotency keys in the DynamoDB table ``table_name`` (create it with
    :func:`create_idempotency_table`). ``client`` takes a ready boto3 DynamoDB client;
    otherwise one is made on first use from ``region`` and ``endpoint_url``."""

    def __init__(
        self,
        table_name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.table_name = table_name
        self.region = region
        self.endpoint_url = endpoint_url
        self._client = client

    def __repr__(self) -> str:
        return f"DynamoDBIdempotencyStore({self.table_name!r})"

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client (made on first use)."""
        if self._client is None:
            self._client = dynamodb_client(self.region, self.endpoint_url)
        return self._client

    def claim(self, key: str, token: str, until: float) -> IdempotencyRecord | None:
        for _ in range(3):
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        "id": {"S": key},
                        "status": {"S": IN_PROGRESS},
                        "expires_at": {"N": _number(until)},
                        "token": {"S": token},
                        TTL_ATTRIBUTE: {"N": str(math.ceil(until))},
                    },
                    ConditionExpression="attribute_not_exists(id) OR expires_at <= :now",
                    ExpressionAttributeValues={":now": {"N": _number(time.time())}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                item = exc.response.get("Item")
            held = _record(key, item) if item else self.get(key)
            if held is not None:
                return held
            # Released between the write and the read: try the claim again.
        raise RuntimeError(f"could not claim idempotency key {key!r}: it keeps changing")

    def complete(self, key: str, token: str, expires_at: float) -> bool:
        return self._conditional(
            self.client.update_item,
            Key={"id": {"S": key}},
            UpdateExpression="SET #status = :completed, expires_at = :expires, #ttl = :ttl",
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#status": "status", "#token": "token", "#ttl": "ttl"},
            ExpressionAttributeValues={
                ":completed": {"S": COMPLETED},
                ":expires": {"N": _number(expires_at)},
                ":ttl": {"N": str(math.ceil(expires_at))},
                ":token": {"S": token},
            },
        )

    def release(self, key: str, token: str) -> bool:
        return self._conditional(
            self.client.delete_item,
            Key={"id": {"S": key}},
            ConditionExpression="#token = :token",
            ExpressionAttributeNames={"#token": "token"},
            ExpressionAttributeValues={":token": {"S": token}},
        )

    def get(self, key: str) -> IdempotencyRecord | None:
        item = self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return _record(key, item) if item else None

    def _conditional(self, call: Any, **params: Any) -> bool:
        try:
            call(TableName=self.table_name, **params)
        except ClientError as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise
        return True


def create_idempotency_table(
    table_name: str,
    *,
    client: Any = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    wait: bool = True,
) -> str:
    """Create the idempotency table (on-demand billing, TTL on ``ttl``) if it does not
    exist; returns its ARN. The same schema in CloudFormation is in ``docs/sqs.md``."""
    client = client or dynamodb_client(region, endpoint_url)
    return ensure_table(client, table_name, ("id",), TTL_ATTRIBUTE, wait=wait)


def _record(key: str, item: dict[str, Any]) -> IdempotencyRecord:
    return IdempotencyRecord(
        key, item["status"]["S"], float(item["expires_at"]["N"]), item["token"]["S"]
    )


def _number(seconds: float) -> str:
    return f"{seconds:.3f}"
