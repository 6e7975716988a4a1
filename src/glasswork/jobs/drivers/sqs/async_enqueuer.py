"""The SQS driver's producing side on aiobotocore: native async I/O for
:class:`~glasswork.jobs.AsyncJobService` (``pip install 'glasswork[async]'``).

Sends (``SendMessage``, ``SendMessageBatch``), queue size lookups and unique-key writes run
on the event loop through aiobotocore, with the same request parameters as the sync driver.
Writes to the DynamoDB scheduler table (delays SQS cannot hold) run the sync driver's code
in a thread (``asyncio.to_thread``): they are one ``PutItem`` per long-delayed job. With a
status table, an enqueue's status is one conditional ``PutItem`` on the loop; a batch's
(``TransactWriteItems`` and their retries) runs the sync code in a thread.

Clients are made on first use, on the running loop, and closed by :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from ...message import JobMessage
from ..records import EnqueueBatchError, EnqueueResult, FailedEnqueue
from .driver import SQSQueueDriver
from .producing import refuse_priority
from .sending import BatchSend, send_error, sent
from .unique import is_condition_failure

#: Connections per client: enough for a web app's concurrent requests to enqueue at once.
MAX_POOL_CONNECTIONS = 64


class AsyncSQSEnqueuer:
    """:class:`~glasswork.jobs.SQSQueueDriver` enqueues as coroutines (see the module)."""

    mode = "native"

    def __init__(self, driver: SQSQueueDriver) -> None:
        self.driver = driver
        self._session = get_session()
        self._stack: AsyncExitStack | None = None
        self._clients: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AsyncSQSEnqueuer({self.driver!r})"

    async def _client(self, service: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # clients belong to the loop they were made on
            self._loop, self._stack, self._clients = loop, AsyncExitStack(), {}
        client = self._clients.get(service)
        if client is None:
            assert self._stack is not None
            clients = self.driver.clients
            region, endpoint = clients.region, clients.endpoint_url
            given = clients.given_sqs  # a boto3 client the driver was given: same place
            if given is not None:
                region, endpoint = given.meta.region_name, given.meta.endpoint_url
            config = AioConfig(
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=MAX_POOL_CONNECTIONS,
            )
            client = await self._stack.enter_async_context(
                self._session.create_client(
                    service, region_name=region, endpoint_url=endpoint, config=config
                )
            )
            self._clients[service] = client
        return client

    async def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """The sync driver's debounced enqueue in a thread (its conditional write, the
        status writes and the send: see :meth:`.producing.Producer.debounce`)."""
        return await asyncio.to_thread(self.driver.enqueue_debounced, message, window_seconds)

    async def aclose(self) -> None:
        stack, self._stack, self._clients, self._loop = self._stack, None, {}, None
        if stack is not None:
            await stack.aclose()

    # -- size limits ------------------------------------------------------------------------

    async def message_limit(self, queue: str) -> int:
        directory = self.driver.directory
        url = directory.queue_url(queue)
        limit = directory.known_limit(url)
        if limit is not None:
            return limit
        sqs = await self._client("sqs")
        try:
            response = await sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["MaximumMessageSize"]
            )
        except (ClientError, BotoCoreError):
            response = {}
        return directory.remember_limit(url, response)

    # -- producing ------------------------------------------------------------------------------

    async def enqueue(self, message: JobMessage) -> EnqueueResult:
        return await self._route(message, 0, time.time())

    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return await self._route(message, delay_seconds, time.time() + delay_seconds)

    async def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        if run_at.tzinfo is None:
            raise ValueError(f"enqueue_at needs an aware datetime, got naive {run_at}")
        due = run_at.timestamp()
        return await self._route(message, due - time.time(), due)

    async def _route(self, message: JobMessage, delay: float, due: float) -> EnqueueResult:
        driver = self.driver
        refuse_priority([message])
        sqs = await self._client("sqs")
        dynamodb, taken = await self._claim([message], delay)
        written: list[str] = []
        try:
            written = await self._record([message], due if delay > 0 else None)
            if delay <= 0:
                return await self._send(sqs, message, 0)
            if driver.directory.accepts_delay(message.queue, delay):
                return await self._send(sqs, message, delay)
            return await asyncio.to_thread(driver.delays.schedule, message, due)
        except BaseException:
            # Not sent, or not known to be (cancelled mid-call by a closing service): the
            # key is given back, so that no retry is refused for a job that may not exist.
            await self._unclaim(dynamodb, taken)
            await self._forget(written)
            raise

    async def _send(self, sqs: Any, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        url = self.driver.directory.queue_url(message.queue)
        await self.message_limit(message.queue)  # so the sync parameters need no request
        try:
            response = await sqs.send_message(
                QueueUrl=url, **self.driver.sender.params(message, delay_seconds)
            )
        except (ClientError, BotoCoreError) as exc:
            raise send_error(message, url, exc) from exc
        return sent(message, response, delay_seconds)

    async def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        driver = self.driver
        refuse_priority(messages)
        results: list[EnqueueResult | None] = [None] * len(messages)
        batched, scheduled = driver.producer.plan_batch(messages, delay_seconds)
        sqs = await self._client("sqs")
        dynamodb, taken = await self._claim(messages, delay_seconds)
        failed: list[FailedEnqueue] = []
        written: list[str] = []
        try:
            due = time.time() + delay_seconds if delay_seconds > 0 else None
            written = await self._record(messages, due)
            if scheduled:
                due = time.time() + delay_seconds
                failed = await asyncio.to_thread(
                    driver.delays.schedule_many, messages, scheduled, due, results
                )
            for url, indexes in batched.items():
                await self.message_limit(messages[indexes[0]].queue)
                for chunk in driver.sender.chunks(url, messages, indexes):
                    batch = BatchSend(driver.sender, url, messages, chunk, delay_seconds, results)
                    for attempt in range(batch.attempts):
                        if attempt:
                            await asyncio.sleep(batch.pause(attempt))
                        entries = batch.entries(attempt)
                        try:
                            response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
                        except (ClientError, BotoCoreError) as exc:
                            response = batch.failed_request(exc, entries)
                        if batch.settle(response):
                            break
                    failed.extend(batch.failures())
        except BaseException:
            # The jobs sent so far keep their keys; the others give theirs back.
            sent_ids = {r.job_id for r in results if r is not None}
            await self._unclaim(dynamodb, [m for m in taken if m.job_id not in sent_ids])
            await self._forget([job_id for job_id in written if job_id not in sent_ids])
            raise
        sent = [r for r in results if r is not None]
        if failed:
            failed_ids = {f.job_id for f in failed}
            await self._unclaim(dynamodb, [m for m in taken if m.job_id in failed_ids])
            await self._forget([job_id for job_id in written if job_id in failed_ids])
            raise EnqueueBatchError(failed, sent, 1 + max(0, driver.batch_retries))
        return sent

    # -- status ---------------------------------------------------------------------------------

    async def _record(self, messages: Sequence[JobMessage], due: float | None) -> list[str]:
        """Write the status of ``messages`` (with a status table; see
        :meth:`.status.EnqueueStatuses.enqueued`): the job ids written."""
        statuses = self.driver.producer.statuses
        if statuses is None:
            return []
        if len(messages) > 1:
            return await asyncio.to_thread(statuses.enqueued, messages, due)
        [message] = messages
        dynamodb = await self._client("dynamodb")
        try:
            await dynamodb.put_item(**statuses.requests.enqueued(message, due, time.time()))
        except ClientError as exc:
            if is_condition_failure(exc):
                return []  # its status lives already (see StatusRequests.ENQUEUE_CONDITION)
            raise statuses.failure([message], exc) from exc
        except BotoCoreError as exc:
            raise statuses.failure([message], exc) from exc
        return [message.job_id]

    async def _forget(self, job_ids: list[str]) -> None:
        statuses = self.driver.producer.statuses
        if job_ids and statuses is not None:
            await asyncio.to_thread(statuses.forget, job_ids)

    # -- unique keys ----------------------------------------------------------------------------

    async def _claim(
        self, messages: Sequence[JobMessage], delay: float
    ) -> tuple[Any, list[JobMessage]]:
        """Take the keys of ``messages``, all or none: the DynamoDB client and the messages
        whose keys may be held now (see :meth:`UniqueKeys.claim`)."""
        keys = self.driver.unique_keys
        if keys is None:
            self.driver.producer.warn_unique_ignored(messages)
            return None, []
        if all(m.unique_key is None for m in messages):
            return None, []
        dynamodb = await self._client("dynamodb")
        taken: list[JobMessage] = []
        try:
            for message in messages:
                if message.unique_key is None:
                    continue
                try:
                    await dynamodb.put_item(**keys.claim_request(message, delay))
                except ClientError as exc:  # DynamoDB answered: nothing was written
                    if is_condition_failure(exc):
                        holder = await dynamodb.get_item(**keys.holder_request(message))
                        raise keys.duplicate(message, holder) from None
                    raise keys.failure(message, exc) from exc
                except BaseException as exc:
                    # No answer (the network, a closing service): the write may have landed,
                    # so the key is given back too (conditional on this job's id: harmless
                    # if it did not).
                    taken.append(message)
                    if isinstance(exc, BotoCoreError):
                        raise keys.failure(message, exc) from exc
                    raise
                taken.append(message)
        except BaseException:
            await self._unclaim(dynamodb, taken)
            raise
        return dynamodb, taken

    async def _unclaim(self, dynamodb: Any, taken: list[JobMessage]) -> None:
        """Give back the keys of ``taken`` (those still held by their own job)."""
        keys = self.driver.unique_keys
        if not taken or keys is None:
            return
        for message in taken:
            try:
                await dynamodb.delete_item(**keys.release_request(message))
            except ClientError as exc:
                if not is_condition_failure(exc):
                    keys.warn_not_released(message, exc)
            except (BotoCoreError, RuntimeError) as exc:  # RuntimeError: a closed client
                keys.warn_not_released(message, exc)
