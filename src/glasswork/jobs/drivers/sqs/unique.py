"""Unique keys on SQS: a DynamoDB conditional write guards each key while its job is pending.

SQS itself keeps no keys (standard queues ignore them; FIFO queues drop a repeat within 5
minutes, silently). With ``SQSQueueDriver(unique_table=...)``, every enqueue of a job with a
unique key first writes one item, only if no live item holds the key::

    pk          S  "unique#<job name>#<unique key>" (its SHA-256 when over 1,024 bytes; a
                   job name holding "#" is length-prefixed, see message.scoped_key)
    sk          S  "unique"
    job_id      S  the job holding the key
    job_name    S, unique_key S  (for people reading the table)
    expires_at  N  when the key lapses by itself: due time + ``unique_ttl``

A second enqueue with the key then raises :class:`~glasswork.jobs.DuplicateJobError` (the
job holding it may take it again: the scheduler sending a long-delayed job, a redrive). The
key is released by :class:`ReleaseUniqueKeys`, an around-run step every worker on the driver
runs (``QueueDriver.run_steps``), once the job is done, dead-lettered or discarded (not
when it will be retried), by a delete conditional on the holder's job id. A key whose
release never happens (a job lost with its queue, say) lapses at ``expires_at``: the
condition treats an expired item as free, and the table's TTL removes it later.

One window stays: when the Lambda worker cannot send a dead letter it reports the record
for retry, with the key already released, so a duplicate could be enqueued before SQS
delivers it again.

The schema is the scheduler table's (``pk``/``sk`` strings, TTL on ``expires_at``), so that
table may serve; its scheduler never reads ``unique#`` items.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import CONDITION_FAILED, error_code
from ...errors import DuplicateJobError, EnqueueError
from ...execution import CallNext, JobRun, Outcome, Retry
from ...message import JobMessage, scoped_key

logger = logging.getLogger("glasswork.jobs")

_MAX_KEY_BYTES = 1024


class UniqueKeys:
    """The unique keys of one SQS driver, in the DynamoDB table ``table_name``.

    The request builders (``*_request``) are shared by the sync driver (boto3) and the
    async one (aiobotocore); the sync calls are here."""

    def __init__(self, table_name: str, client: Callable[[], Any], ttl: timedelta) -> None:
        self.table_name = table_name
        self._client = client
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"UniqueKeys(table={self.table_name!r}, ttl={self.ttl})"

    # -- requests ------------------------------------------------------------------------------

    def item_key(self, message: JobMessage) -> dict[str, Any]:
        assert message.unique_key is not None
        key = "unique#" + scoped_key(message.job_name, message.unique_key)
        if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
            key = "unique#" + hashlib.sha256(key.encode("utf-8")).hexdigest()
        return {"pk": {"S": key}, "sk": {"S": "unique"}}

    def claim_request(self, message: JobMessage, delay_seconds: float) -> dict[str, Any]:
        """The conditional ``PutItem`` that takes the key of ``message``."""
        now = time.time()
        expires = now + max(0.0, delay_seconds) + self.ttl.total_seconds()
        assert message.unique_key is not None
        return {
            "TableName": self.table_name,
            "Item": {
                **self.item_key(message),
                "job_id": {"S": message.job_id},
                "job_name": {"S": message.job_name},
                "unique_key": {"S": message.unique_key[:1024]},
                "expires_at": {"N": str(int(expires) + 1)},
            },
            # The job itself may take its key again: the scheduler sends a long-delayed job
            # through the driver, and a redrive sends a dead letter back.
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now OR job_id = :job",
            "ExpressionAttributeValues": {
                ":now": {"N": str(int(now))},
                ":job": {"S": message.job_id},
            },
        }

    def release_request(self, message: JobMessage) -> dict[str, Any]:
        """The ``DeleteItem`` that frees the key, if ``message``'s job still holds it."""
        return {
            "TableName": self.table_name,
            "Key": self.item_key(message),
            "ConditionExpression": "job_id = :job",
            "ExpressionAttributeValues": {":job": {"S": message.job_id}},
        }

    def holder_request(self, message: JobMessage) -> dict[str, Any]:
        return {"TableName": self.table_name, "Key": self.item_key(message), "ConsistentRead": True}

    def duplicate(self, message: JobMessage, holder: dict[str, Any]) -> DuplicateJobError:
        assert message.unique_key is not None
        job_id = holder.get("Item", {}).get("job_id", {}).get("S")
        return DuplicateJobError(message.job_name, message.unique_key, job_id)

    def failure(self, message: JobMessage, exc: Exception) -> EnqueueError:
        return EnqueueError(
            f"could not take the unique key {message.unique_key!r} of job "
            f"{message.job_name!r} in DynamoDB table {self.table_name!r}: {exc}"
        )

    def warn_not_released(self, message: JobMessage, exc: BaseException) -> None:
        logger.warning(
            "could not give back the unique key %r of job %r (job id %s) in DynamoDB table "
            "%r: %s; it lapses by itself after %s",
            message.unique_key,
            message.job_name,
            message.job_id,
            self.table_name,
            exc,
            self.ttl,
        )

    # -- sync calls ----------------------------------------------------------------------------

    def claim(self, messages: list[JobMessage], delay_seconds: float) -> list[JobMessage]:
        """Take the keys of ``messages`` (those with one), all or none: a key already held
        raises :class:`DuplicateJobError` after the keys taken so far are released.
        Returns the messages whose keys were taken."""
        taken: list[JobMessage] = []
        try:
            for message in messages:
                if message.unique_key is None:
                    continue
                try:
                    self._client().put_item(**self.claim_request(message, delay_seconds))
                except ClientError as exc:
                    if is_condition_failure(exc):
                        holder = self._client().get_item(**self.holder_request(message))
                        raise self.duplicate(message, holder) from None
                    raise self.failure(message, exc) from exc
                except BotoCoreError as exc:
                    raise self.failure(message, exc) from exc
                taken.append(message)
        except BaseException:
            self.release(taken)
            raise
        return taken

    def release(self, messages: list[JobMessage]) -> None:
        """Free the keys ``messages`` hold (a key another job holds by now is left alone)."""
        for message in messages:
            try:
                self._client().delete_item(**self.release_request(message))
            except ClientError as exc:
                if not is_condition_failure(exc):
                    raise


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED


class ReleaseUniqueKeys:
    """The around-run step that frees a finished job's unique key (see the module
    docstring); a job that will be retried keeps it."""

    __slots__ = ("keys",)

    def __init__(self, keys: UniqueKeys) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"ReleaseUniqueKeys({self.keys.table_name!r})"

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        outcome = await call_next()
        if isinstance(outcome, Retry) or run.message.unique_key is None:
            return outcome
        try:
            if asyncio._get_running_loop() is None:  # the Lambda worker: no loop to keep free
                self.keys.release([run.message])
            else:
                await asyncio.to_thread(self.keys.release, [run.message])
        except Exception:
            run.ctx.logger.warning(
                "could not release unique key %r; it lapses by itself after %s",
                run.message.unique_key,
                self.keys.ttl,
                exc_info=True,
            )
        return outcome
