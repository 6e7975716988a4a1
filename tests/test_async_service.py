"""AsyncJobService on sync drivers (a bounded thread pool) and on drivers whose methods are
``async def`` (awaited natively); JobService refusing the latter. SQS: tests/integration."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from glasswork.jobs import (
    AsyncJobService,
    ConfigurationError,
    EnqueueError,
    EnqueueResult,
    InvalidJobPayloadError,
    JobMessage,
    JobService,
    MockQueueDriver,
    PayloadTooLargeError,
    QueueDriver,
    define_job,
)


class Welcome(BaseModel):
    user_id: str


welcome = define_job(name="welcome", schema=Welcome, handler=lambda p, ctx: None)


class SeedsStyleDriver:
    """A custom driver ported as the seeds write it: ``async def enqueue``."""

    def __init__(self) -> None:
        self.sent: list[tuple[JobMessage, float]] = []

    async def enqueue(self, message: JobMessage) -> EnqueueResult:
        await asyncio.sleep(0)
        self.sent.append((message, 0))
        return EnqueueResult(f"m{len(self.sent)}", message.job_id, message.queue)

    async def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        await asyncio.sleep(0)
        self.sent.append((message, delay_seconds))
        return EnqueueResult(f"m{len(self.sent)}", message.job_id, message.queue)


class AsyncSubclassDriver(MockQueueDriver):
    async def enqueue(self, message: JobMessage) -> EnqueueResult:  # type: ignore[override]
        return super().enqueue(message)


def test_job_service_refuses_a_driver_with_async_methods_naming_async_job_service() -> None:
    with pytest.raises(ConfigurationError, match=r"enqueue is async def.*AsyncJobService"):
        JobService(AsyncSubclassDriver())


def test_job_service_options_are_keyword_only_and_checked() -> None:
    with pytest.raises(TypeError):
        JobService(MockQueueDriver(), {"defaultQueue": "default"})  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="default_queue"):
        JobService(MockQueueDriver(), default_queue={"defaultQueue": "x"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="default_queue"):
        AsyncJobService(MockQueueDriver(), default_queue="")


def test_async_service_runs_seeds_style_drivers_natively() -> None:
    driver = SeedsStyleDriver()

    async def main() -> list[EnqueueResult]:
        async with AsyncJobService(driver) as jobs:
            assert jobs.mode == "native"
            return [
                await jobs.enqueue(welcome, Welcome(user_id="1")),
                await jobs.enqueue_in(welcome, Welcome(user_id="2"), "10m"),
                await jobs.enqueue_at(
                    welcome, Welcome(user_id="3"), datetime.now(UTC) - timedelta(seconds=1)
                ),
                *await jobs.enqueue_many(welcome, [Welcome(user_id="4"), Welcome(user_id="5")]),
                await jobs.enqueue_raw(welcome, {"user_id": "6"}, delay=30),
            ]

    results = asyncio.run(main())
    assert [r.message_id for r in results] == ["m1", "m2", "m3", "m4", "m5", "m6"]
    assert [(m.payload["user_id"], d) for m, d in driver.sent] == [
        ("1", 0),
        ("2", 600.0),
        ("3", 0),
        ("4", 0),
        ("5", 0),
        ("6", 30.0),
    ]


def test_async_service_runs_sync_drivers_on_a_thread_pool() -> None:
    driver = MockQueueDriver()

    async def main() -> None:
        jobs = AsyncJobService(driver, default_queue="web", max_threads=2)
        assert jobs.mode == "threads"
        await asyncio.gather(*(jobs.enqueue(welcome, Welcome(user_id=str(i))) for i in range(20)))
        await jobs.enqueue_many(welcome, [Welcome(user_id="a"), Welcome(user_id="b")], delay="1m")
        with pytest.raises(InvalidJobPayloadError):
            await jobs.enqueue_raw(welcome, {"user_id": 5})
        with pytest.raises(ValueError, match="aware"):
            await jobs.enqueue_at(welcome, Welcome(user_id="x"), datetime.now())
        await jobs.aclose()

    asyncio.run(main())
    assert len(driver.jobs) == 22
    assert {m.queue for m in driver.jobs} == {"web"}
    assert [e.delay_seconds for e in driver.enqueued[-2:]] == [60.0, 60.0]


def test_async_service_checks_the_drivers_size_limit() -> None:
    driver = MockQueueDriver()
    driver.max_message_bytes = 500

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            # Fits with room for a trace context: once an earlier test in the process has
            # set up the OpenTelemetry SDK, every message carries its traceparent (~75 bytes).
            await jobs.enqueue(welcome, Welcome(user_id="x" * 200))
            with pytest.raises(PayloadTooLargeError, match="500-byte limit"):
                await jobs.enqueue(welcome, Welcome(user_id="x" * 500))

    asyncio.run(main())
    assert len(driver.jobs) == 1


class BlockingDriver(MockQueueDriver):
    """A sync driver whose enqueue blocks until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        self.entered.set()
        assert self.release.wait(10)
        return super().enqueue(message)


def test_the_event_loop_keeps_running_while_a_thread_pool_enqueue_blocks() -> None:
    driver = BlockingDriver()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        jobs = AsyncJobService(driver)
        tick = asyncio.create_task(ticker())
        enqueue = asyncio.create_task(jobs.enqueue(welcome, Welcome(user_id="1")))
        while not driver.entered.is_set():
            await asyncio.sleep(0)
        before = ticks
        for _ in range(50):  # the driver is blocked in its thread; the loop is not
            await asyncio.sleep(0)
        assert not enqueue.done()
        assert ticks - before >= 50
        driver.release.set()
        await enqueue
        tick.cancel()
        await jobs.aclose()

    asyncio.run(main())
    assert len(driver.jobs) == 1


def test_custom_sync_driver_subclass_works_with_both_services() -> None:
    class Recording(QueueDriver):
        def __init__(self) -> None:
            self.sent: list[str] = []

        def enqueue(self, message: JobMessage) -> EnqueueResult:
            self.sent.append(message.job_name)
            return EnqueueResult("1", message.job_id, message.queue)

        def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
            return self.enqueue(message)

    driver = Recording()
    assert repr(driver) == "Recording()"
    JobService(driver).enqueue(welcome, Welcome(user_id="1"))

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            await jobs.enqueue(welcome, Welcome(user_id="2"))

    asyncio.run(main())
    assert driver.sent == ["welcome", "welcome"]


class GatedDriver(SeedsStyleDriver):
    """An ``async def`` driver whose sends wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def enqueue(self, message: JobMessage) -> EnqueueResult:
        self.waiting += 1
        await self.gate.wait()
        return await super().enqueue(message)


async def loop_turns(turns: int = 100) -> None:
    """Let every other task run as far as it can without I/O (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def test_a_cancelled_caller_does_not_cancel_its_enqueue(caplog: pytest.LogCaptureFixture) -> None:
    driver = GatedDriver()

    async def main() -> None:
        async with AsyncJobService(driver) as jobs:
            caller = asyncio.create_task(jobs.enqueue(welcome, Welcome(user_id="1")))
            while not driver.waiting:
                await asyncio.sleep(0)
            caller.cancel()
            await asyncio.wait({caller}, timeout=10)
            assert caller.cancelled()  # at once: the driver is still waiting
            assert driver.sent == []
            driver.gate.set()  # the enqueue goes on, as if its caller had waited

    with caplog.at_level("INFO", logger="glasswork.jobs"):
        asyncio.run(main())
    assert [m.payload["user_id"] for m, _ in driver.sent] == ["1"]
    assert "job 'welcome' (job ids " in caplog.text
    assert "whose caller was cancelled, is enqueued" in caplog.text


def test_aclose_waits_for_thread_pool_enqueues_refuses_new_ones_and_can_reopen() -> None:
    driver = BlockingDriver()

    async def main() -> None:
        jobs = AsyncJobService(driver)
        first = asyncio.create_task(jobs.enqueue(welcome, Welcome(user_id="1")))
        while not driver.entered.is_set():
            await asyncio.sleep(0)
        closing = asyncio.create_task(jobs.aclose())
        await loop_turns()
        assert not closing.done()  # waiting for the enqueue in its thread
        with pytest.raises(EnqueueError, match="closing: job 'welcome' was not enqueued"):
            await jobs.enqueue(welcome, Welcome(user_id="2"))
        driver.release.set()
        await closing
        assert (await first).job_id == driver.jobs[0].job_id
        # Closed, then used again (a second TestClient on the same app, say): it reopens.
        await jobs.enqueue(welcome, Welcome(user_id="3"))
        await jobs.aclose()

    asyncio.run(main())
    assert [m.payload["user_id"] for m in driver.jobs] == ["1", "3"]
