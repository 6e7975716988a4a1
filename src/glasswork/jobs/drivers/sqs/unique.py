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

**Debounce** (``enqueue(..., debounce=)``, :meth:`UniqueKeys.supersede`): an SQS message
cannot be changed or recalled, so the item is the truth about which job of a key counts.
A debounced enqueue writes the item in one conditional ``UpdateItem`` (its own job id, and
``debounce``: the window), taking the key when it is free or held by another debounced
job, which it thereby supersedes (``ALL_OLD`` names it); a key held by a job enqueued
without debounce is refused. Each debounced enqueue sends a message of its own, delayed by
the window. The step (:class:`ReleaseUniqueKeys`, on every worker through the driver's run
steps) looks at the item before a debounced delivery runs (a ``GetItem``): one whose job no
longer holds the key is superseded and ends ``cancelled`` without running, its message
deleted; and a run superseded while it ran finds out when its release fails: its outcome
becomes ``cancelled`` (a failure it had is not retried). Racing enqueues: the last write of
the item wins, and every other message is superseded.

    debounce    N  the window of the debounced enqueue holding the key (seconds)

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
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import CONDITION_FAILED, error_code
from ...debounce import superseded_reason
from ...errors import DuplicateJobError, EnqueueError, JobCancelledError
from ...execution import CallNext, JobRun, Outcome, Retry
from ...message import JobMessage, scoped_key
from ...outcomes import Cancelled, DeadLetter

logger = logging.getLogger("glasswork.jobs")
T = TypeVar("T")

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
        item = {
            **self.item_key(message),
            "job_id": {"S": message.job_id},
            "job_name": {"S": message.job_name},
            "unique_key": {"S": message.unique_key[:1024]},
            "expires_at": {"N": str(int(expires) + 1)},
        }
        if message.debounce is not None:  # a redriven debounced job: still supersedable
            item["debounce"] = {"N": repr(float(message.debounce))}
        return {
            "TableName": self.table_name,
            "Item": item,
            # The job itself may take its key again: the scheduler sends a long-delayed job
            # through the driver, and a redrive sends a dead letter back.
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now OR job_id = :job",
            "ExpressionAttributeValues": {
                ":now": {"N": str(int(now))},
                ":job": {"S": message.job_id},
            },
        }

    def supersede_request(self, message: JobMessage, delay_seconds: float) -> dict[str, Any]:
        """The conditional ``UpdateItem`` of a debounced enqueue: ``message``'s job takes the
        key, free or held by another debounced job (see the module); the old item comes
        back, also when the condition fails."""
        now = time.time()
        expires = now + max(0.0, delay_seconds) + self.ttl.total_seconds()
        assert message.unique_key is not None
        assert message.debounce is not None
        return {
            "TableName": self.table_name,
            "Key": self.item_key(message),
            "UpdateExpression": (
                "SET job_id = :job, job_name = :name, unique_key = :key, "
                "expires_at = :expires, debounce = :window"
            ),
            "ConditionExpression": (
                "attribute_not_exists(pk) OR expires_at < :now OR job_id = :job OR "
                "attribute_exists(debounce)"
            ),
            "ExpressionAttributeValues": {
                ":job": {"S": message.job_id},
                ":name": {"S": message.job_name},
                ":key": {"S": message.unique_key[:1024]},
                ":expires": {"N": str(int(expires) + 1)},
                ":window": {"N": repr(float(message.debounce))},
                ":now": {"N": str(int(now))},
            },
            "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
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

    # -- debounce --------------------------------------------------------------------------------

    def supersede(self, message: JobMessage, delay_seconds: float) -> dict[str, Any] | None:
        """Take the key of debounced ``message`` (see :meth:`supersede_request`); returns
        the item it replaced (None: the key was free), for :meth:`superseded` and
        :meth:`restore`. A key held by a job enqueued without debounce raises
        :class:`DuplicateJobError`."""
        try:
            response = self._client().update_item(**self.supersede_request(message, delay_seconds))
        except ClientError as exc:
            if is_condition_failure(exc):
                raise self.duplicate(message, {"Item": exc.response.get("Item") or {}}) from None
            raise self.failure(message, exc) from exc
        except BotoCoreError as exc:
            raise self.failure(message, exc) from exc
        old: dict[str, Any] | None = response.get("Attributes") or None
        return old

    @staticmethod
    def superseded(message: JobMessage, old: dict[str, Any] | None) -> str | None:
        """The job ``message``'s debounced enqueue superseded, from the item it replaced
        (None: none; a lapsed key of a job enqueued without debounce was free)."""
        if old is None or "debounce" not in old:
            return None
        job_id = old.get("job_id", {}).get("S")
        return job_id if isinstance(job_id, str) and job_id != message.job_id else None

    def restore(self, message: JobMessage, old: dict[str, Any] | None) -> None:
        """Undo :meth:`supersede` after the send failed: the item it replaced is put back
        (so the superseded job counts again), or the key freed, unless a later enqueue
        has taken it since. A failure is logged: a key that cannot be given back lapses."""
        try:
            if old is None:
                self.release([message])
                return
            self._client().put_item(
                TableName=self.table_name,
                Item=old,
                ConditionExpression="job_id = :job",
                ExpressionAttributeValues={":job": {"S": message.job_id}},
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                self.warn_not_released(message, exc)
        except BotoCoreError as exc:
            self.warn_not_released(message, exc)

    def holder(self, message: JobMessage) -> str | None:
        """The job holding ``message``'s key now (a strongly consistent ``GetItem``; None:
        nobody)."""
        item = self._client().get_item(**self.holder_request(message)).get("Item") or {}
        job_id = item.get("job_id", {}).get("S")
        return job_id if isinstance(job_id, str) else None

    def release_or_holder(self, message: JobMessage) -> str | None:
        """Free ``message``'s key if its job holds it: None. Otherwise the job that holds
        it (``""``: nobody, the key lapsed)."""
        try:
            self._client().delete_item(
                **self.release_request(message), ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            job_id = (exc.response.get("Item") or {}).get("job_id", {}).get("S")
            return job_id if isinstance(job_id, str) else ""
        return None


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED


class ReleaseUniqueKeys:
    """The around-run step of unique keys on SQS (see the module docstring): frees a
    finished job's key (a job that will be retried keeps it); for a debounced job, first
    makes sure its job still holds the key (a superseded one ends cancelled without
    running), and turns the outcome of a run superseded while it ran into a cancellation."""

    __slots__ = ("keys",)

    def __init__(self, keys: UniqueKeys) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"ReleaseUniqueKeys({self.keys.table_name!r})"

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        message = run.message
        if message.unique_key is None:
            return await call_next()
        if message.debounce is not None:
            return await self._debounced(run, message, call_next)
        outcome = await call_next()
        if isinstance(outcome, Retry):
            return outcome
        try:
            await _off_loop(self.keys.release, [message])
        except Exception:
            run.ctx.logger.warning(
                "could not release unique key %r; it lapses by itself after %s",
                message.unique_key,
                self.keys.ttl,
                exc_info=True,
            )
        return outcome

    async def _debounced(self, run: JobRun, message: JobMessage, call_next: CallNext) -> Outcome:
        holder = await _off_loop(self.keys.holder, message)
        if holder != message.job_id:
            if holder is None:
                run.ctx.logger.warning(
                    "not run: its unique key %r is no longer held (it ran already, or the key "
                    "lapsed %s after the job was due)",
                    message.unique_key,
                    self.keys.ttl,
                )
                reason = "not run: its debounced unique key was no longer held"
            else:
                run.ctx.logger.debug("not run: superseded by job %s (debounce)", holder)
                reason = superseded_reason(holder)
            return Cancelled(message, reason, JobCancelledError(reason))
        outcome = await call_next()
        try:
            if isinstance(outcome, Retry):
                holder = await _off_loop(self.keys.holder, message)
            else:
                holder = await _off_loop(self.keys.release_or_holder, message)
        except Exception:
            run.ctx.logger.warning(
                "could not look at or release unique key %r; it lapses by itself after %s",
                message.unique_key,
                self.keys.ttl,
                exc_info=True,
            )
            return outcome
        if not holder or holder == message.job_id or isinstance(outcome, DeadLetter):
            return outcome  # released, still its own (or lapsed), or dead-lettered as any
        # Superseded while it ran: what it did no longer counts, and it is never retried.
        reason = superseded_reason(holder, running=True)
        run.ctx.logger.info("%s; its outcome (%s) does not count", reason, outcome.kind)
        return Cancelled(message, reason, JobCancelledError(reason))


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``: on the calling thread in the Lambda worker (no loop to keep free),
    else in a thread."""
    if asyncio._get_running_loop() is None:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
