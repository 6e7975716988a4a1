"""How :class:`~glasswork.jobs.AsyncJobService` runs a driver without blocking the event loop.

* A driver with native async I/O hands over its own :class:`AsyncEnqueuer`
  (:meth:`QueueDriver.async_enqueuer`; the SQS driver does, on aiobotocore).
* A driver whose producing methods are ``async def`` (a custom driver ported as the seeds
  write it) is awaited as it is: :class:`CoroutineDriver`.
* Any other driver runs in a bounded thread pool: :class:`ThreadedDriver`. Each enqueue
  holds one thread while the driver works; the loop only awaits its result.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..message import MAX_MESSAGE_BYTES, JobMessage
from .contract import AsyncEnqueuer, CoroutineProducing, capabilities_of, coroutine_methods
from .records import EnqueueResult

T = TypeVar("T")


def async_enqueuer(driver: Any, max_threads: int) -> AsyncEnqueuer:
    """The way to run ``driver`` from a coroutine (see the module docstring)."""
    caps = capabilities_of(driver)
    if caps.coroutine_producing is not None:
        return CoroutineDriver(caps.coroutine_producing)
    enqueuer = caps.native_async.async_enqueuer() if caps.native_async is not None else None
    if enqueuer is not None:
        return enqueuer
    return ThreadedDriver(driver, max_threads)


class ThreadedDriver:
    """A sync driver's methods on a thread pool of at most ``max_threads`` threads."""

    mode = "threads"

    def __init__(self, driver: Any, max_threads: int) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.driver = driver
        self.max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None  # made on first use, again after aclose

    def __repr__(self) -> str:
        return f"ThreadedDriver({self.driver!r}, max_threads={self.max_threads})"

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.max_threads, thread_name_prefix="glasswork-enqueue"
            )
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def enqueue(self, message: JobMessage) -> EnqueueResult:
        return await self._run(self.driver.enqueue, message)

    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        return await self._run(self.driver.enqueue_in, message, delay_seconds)

    async def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        return await self._run(self.driver.enqueue_at, message, run_at)

    async def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        return await self._run(self.driver.enqueue_many, messages, delay_seconds)

    async def message_limit(self, queue: str) -> int:
        return await self._run(self.driver.message_limit, queue)

    async def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        debounce = capabilities_of(self.driver).debounce
        assert debounce is not None, "the service refuses a driver without Debounce"
        return await self._run(debounce.enqueue_debounced, message, window_seconds)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


class CoroutineDriver:
    """A driver whose ``enqueue``/``enqueue_in`` are ``async def``: awaited on the loop.
    ``enqueue_at`` and ``enqueue_many`` fall back on those two when the driver has no async
    version of its own."""

    mode = "native"

    def __init__(self, driver: CoroutineProducing) -> None:
        self.driver = driver
        self.methods = coroutine_methods(driver)

    def __repr__(self) -> str:
        return f"CoroutineDriver({self.driver!r})"

    async def enqueue(self, message: JobMessage) -> EnqueueResult:
        result: EnqueueResult = await self.driver.enqueue(message)
        return result

    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        result: EnqueueResult = await self.driver.enqueue_in(message, delay_seconds)
        return result

    async def enqueue_at(self, message: JobMessage, run_at: datetime) -> EnqueueResult:
        own = self.methods.enqueue_at
        if own is not None:
            return await own(message, run_at)
        delay = (run_at - datetime.now(UTC)).total_seconds()
        return await (self.enqueue_in(message, delay) if delay > 0 else self.enqueue(message))

    async def enqueue_many(
        self, messages: Sequence[JobMessage], delay_seconds: float = 0.0
    ) -> list[EnqueueResult]:
        own = self.methods.enqueue_many
        if own is not None:
            return await own(messages, delay_seconds)
        if delay_seconds > 0:
            return [await self.enqueue_in(m, delay_seconds) for m in messages]
        return [await self.enqueue(m) for m in messages]

    async def enqueue_debounced(self, message: JobMessage, window_seconds: float) -> EnqueueResult:
        """The driver's own ``enqueue_debounced``, awaited when it is ``async def``."""
        debounce = capabilities_of(self.driver).debounce
        assert debounce is not None, "the service refuses a driver without Debounce"
        sent = debounce.enqueue_debounced(message, window_seconds)
        result: EnqueueResult = await sent if inspect.isawaitable(sent) else sent
        return result

    async def message_limit(self, queue: str) -> int:
        limit = self.methods.message_limit
        if limit is None:
            return MAX_MESSAGE_BYTES
        value = limit(queue)
        return int(await value) if inspect.isawaitable(value) else int(value)

    async def aclose(self) -> None:
        if self.methods.aclose is not None:
            await self.methods.aclose()
