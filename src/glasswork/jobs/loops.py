"""The event loop async jobs run on when their worker has none (the Lambda worker, the mock
driver's drain, ``Executor.execute_sync``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class PrivateLoop:
    """One event loop, made on first use and kept, so a Lambda container reuses it between
    invocations; :meth:`run` runs a coroutine to completion on it."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run ``coro`` to completion here; from a thread whose own loop is running (an
        async caller), on a fresh loop in a helper thread instead."""
        if asyncio._get_running_loop() is not None:
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, as_coroutine(coro)).result()
        loop = self.loop
        try:
            return loop.run_until_complete(coro)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # SystemExit/KeyboardInterrupt leave the loop mid-iteration, with a stale
                # stop callback queued: start the next run on a fresh loop.
                self._loop = None
                loop.close()
            raise


async def as_coroutine(awaitable: Awaitable[Any]) -> Any:
    """Any awaitable as a coroutine (what ``run_until_complete`` and ``asyncio.run`` take)."""
    return await awaitable
