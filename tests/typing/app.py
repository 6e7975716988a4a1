"""A small user app, type-checked by tests/test_typing.py (never run).

Every line marked ``# expect-error`` must be an error under both mypy --strict and pyright;
every other line must pass both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict

from pydantic import BaseModel, TypeAdapter

from glasswork import (
    AsyncJobService,
    EnqueueResult,
    JobContext,
    JobDefinition,
    JobService,
    MockQueueDriver,
    SQLiteQueueDriver,
    SQSQueueDriver,
    Worker,
    bootstrap_worker,
    create_scheduler_handler,
    define_job,
    define_module,
    define_periodic_job,
    run_scheduler,
)
from glasswork.jobs import SQSQueueDriver as JobsSQSQueueDriver
from glasswork.jobs.drivers import JobStatus
from glasswork.jobs.errors import JobFailedError
from glasswork.jobs.execution import CallNext, JobRun, Outcome
from glasswork.jobs.following import AsyncJobHandle, JobHandle
from glasswork.jobs.idempotency import DynamoDBIdempotencyStore
from glasswork.jobs.metrics import OutcomeLog
from glasswork.jobs.workflows import (
    AsyncWorkflowHandle,
    MemberFailure,
    Signature,
    WorkflowHandle,
    WorkflowStatus,
    chain,
    group,
)


class Welcome(BaseModel):
    user_id: str


class UserService:
    def find(self, user_id: str) -> str | None:
        return user_id


def send_welcome(payload: Welcome, ctx: JobContext) -> None:
    users = ctx.services.get(UserService)
    name: str | None = users.find(payload.user_id)
    wrong: int = ctx.services.get(UserService)  # expect-error
    ctx.logger.info({"user_id": payload.user_id, "name": name, "wrong": wrong}, "sent")


async def send_welcome_async(payload: Welcome, ctx: JobContext) -> None:
    ctx.logger.info("sent %s", payload.user_id)


def takes_int(payload: int, ctx: JobContext) -> None:
    pass


def returns_value(payload: Welcome) -> int:
    return 1


welcome = define_job(
    name="welcome", schema=Welcome, handler=send_welcome, unique={"key": lambda p: p.user_id}
)
welcome_checked: JobDefinition[Welcome] = welcome
welcome_async = define_job(name="welcome-async", schema=Welcome, handler=send_welcome_async)
one_arg = define_job(name="one-arg", schema=Welcome, handler=lambda p: print(p.user_id))
no_args = define_job(name="no-args", schema=Welcome, handler=lambda: None)
grouped = define_job(
    name="grouped", schema=Welcome, handler=send_welcome, group_id=lambda p: p.user_id
)
bad_handler = define_job(name="bad", schema=Welcome, handler=takes_int)  # expect-error
bad_key = define_job(name="k", schema=Welcome, handler=print, unique=lambda p: p.x)  # expect-error
counted = define_job(name="counted", schema=Welcome, handler=returns_value)
wrong_type: JobDefinition[int] = welcome  # expect-error


class Order(TypedDict):
    order_id: str
    amount: int


def charge(payload: Order) -> None:
    print(payload["amount"] + 1)


charge_job = define_job(name="charge", schema=Order, handler=charge)


@dataclass
class Point:
    x: int
    y: int


point_job = define_job(name="point", schema=Point, handler=lambda p: print(p.x + p.y))
numbers_job = define_job(
    name="numbers", schema=TypeAdapter(list[int]), handler=lambda p: print(sum(p))
)
untyped_job = define_job(name="ping", handler=lambda payload, ctx: None)
bare_job = define_job(name="bare", handler=lambda: None)
cleanup = define_periodic_job(name="cleanup", handler=lambda: None, schedule="rate(1 day)")
hourly = define_periodic_job(
    name="hourly", handler=lambda: None, schedule="rate(1 hour)", catchup="all", catchup_limit=24
)
define_periodic_job(name="h", handler=lambda: None, catchup="latest", overlap=False)
define_periodic_job(name="h", handler=lambda: None, catchup="every")  # expect-error

jobs = JobService(MockQueueDriver(), default_queue="web")
jobs.enqueue(welcome, Welcome(user_id="1"))
jobs.enqueue(welcome, {"user_id": "1"})  # expect-error
jobs.enqueue(welcome, {"user_id": 123})  # expect-error
jobs.enqueue(welcome, 42)  # expect-error
jobs.enqueue_in(welcome, Welcome(user_id="1"), "10m")
jobs.enqueue_in(welcome, {"user_id": "1"}, "10m")  # expect-error
jobs.enqueue_at(welcome, Welcome(user_id="1"), datetime.now(UTC))
jobs.enqueue_at(welcome, "1", datetime.now(UTC))  # expect-error
jobs.enqueue_many(welcome, [Welcome(user_id="1"), Welcome(user_id="2")])
jobs.enqueue_many(welcome, [{"user_id": "1"}])  # expect-error
jobs.enqueue_raw(welcome, {"user_id": "1"}, delay="5m")
debounced: JobHandle[None] = jobs.enqueue(welcome, Welcome(user_id="1"), debounce="30s")
jobs.enqueue(welcome, Welcome(user_id="1"), debounce=timedelta(seconds=30), priority=1)
jobs.enqueue_raw(welcome, {"user_id": "1"}, debounce=30)
jobs.enqueue(welcome, Welcome(user_id="1"), debounce=["30s"])  # expect-error
jobs.enqueue_many(welcome, [Welcome(user_id="1")], debounce="30s")  # expect-error
jobs.enqueue_in(welcome, Welcome(user_id="1"), "1m", debounce="30s")  # expect-error
jobs.enqueue(welcome, welcome.validate({"user_id": "1"}))
jobs.enqueue(charge_job, Order(order_id="o1", amount=5))
order: Order = {"order_id": "o2", "amount": 7}
jobs.enqueue(charge_job, order)
jobs.enqueue(charge_job, Order(order_id="o1", amount="5"))  # expect-error
jobs.enqueue(charge_job, {"order_id": "o1", "amount": "5"})  # expect-error
jobs.enqueue(charge_job, {"order_id": "o1"})  # expect-error
jobs.enqueue(point_job, Point(1, 2))
jobs.enqueue(point_job, {"x": 1, "y": 2})  # expect-error
jobs.enqueue(numbers_job, [1, 2, 3])
jobs.enqueue(numbers_job, ["1"])  # expect-error
jobs.enqueue(untyped_job, {"anything": True})
jobs.enqueue(cleanup, None)
JobService(MockQueueDriver(), {"defaultQueue": "default"})  # expect-error


# What a handler returns types what waiting for its job gives back.
class Receipt(BaseModel):
    total: int


def make_receipt(payload: Welcome) -> Receipt:
    return Receipt(total=1)


async def count_async(payload: Welcome, ctx: JobContext) -> int:
    return 1


receipt_job = define_job(name="receipt", schema=Welcome, handler=make_receipt)
counted_async = define_job(name="counted-async", schema=Welcome, handler=count_async)
counted_checked: JobDefinition[Welcome, int] = counted
counted_one_param: JobDefinition[Welcome] = counted  # R defaults to Any
async_checked: JobDefinition[Welcome, int] = counted_async
not_a_coroutine: JobDefinition[Welcome, str] = counted_async  # expect-error
wrong_result: JobDefinition[Welcome, str] = counted  # expect-error
handle = jobs.enqueue(counted, Welcome(user_id="1"))
handle_checked: JobHandle[int] = handle
still_a_result: EnqueueResult = handle
total: int = handle.wait(timeout=5)
total_text: str = handle.wait()  # expect-error
receipt: Receipt = jobs.enqueue(receipt_job, Welcome(user_id="1")).wait(timeout=1.5, poll=0.1)
not_a_receipt: int = jobs.enqueue(receipt_job, Welcome(user_id="1")).wait()  # expect-error
nothing: None = jobs.enqueue(welcome, Welcome(user_id="1")).wait()
delayed_total: int = jobs.enqueue_in(counted, Welcome(user_id="1"), "1m", priority=5).wait()
raw_total: int = jobs.enqueue_raw(counted, {"user_id": "1"}).wait()
jobs.enqueue(counted, Welcome(user_id="1"), priority="high")  # expect-error
status: JobStatus | None = handle.status()
state: str | None = status.state if status is not None else None
cancelled: bool = handle.cancel()
by_id: object = jobs.wait(handle.job_id, timeout=1)
jobs.status(handle.job_id).state  # expect-error
kept = define_job(name="kept", schema=Welcome, handler=send_welcome, result_ttl="1h", priority=3)
define_job(name="ttl", handler=send_welcome, result_ttl=[1])  # expect-error
limited = define_job(
    name="limited",
    schema=Welcome,
    handler=send_welcome,
    rate_limit="100/m",
    concurrency_limit=2,
    concurrency_key=lambda p: p.user_id,
)
define_job(name="lim", schema=Welcome, handler=send_welcome, concurrency_limit="2")  # expect-error
define_job(name="lim", schema=Welcome, handler=send_welcome, rate_limit=100)  # expect-error
fair = define_job(
    name="fair", schema=Welcome, handler=send_welcome, fairness_key=lambda p: p.user_id
)
fair_checked: JobDefinition[Welcome, None] = fair
define_job(name="f", schema=Welcome, handler=send_welcome, fairness_key=len)  # expect-error
define_job(name="f", schema=Welcome, handler=send_welcome, fairness_key="t")  # expect-error
periodic_total = define_periodic_job(name="totals", handler=lambda: 3, schedule="rate(1 hour)")
periodic_checked: JobDefinition[None, int] = periodic_total
periodic_text: JobDefinition[None, str] = periodic_total  # expect-error
try:
    handle.wait()
except JobFailedError as failed:
    why: str | None = failed.error

AppModule = define_module(
    name="app", providers=[UserService], jobs=[welcome, welcome_async, charge_job, cleanup]
)
sqs = SQSQueueDriver(region="us-east-1", queues={"default": "https://sqs.example/1/jobs"})
same_class: type[SQSQueueDriver] = JobsSQSQueueDriver
worker: Worker = Worker(module=AppModule, driver=SQLiteQueueDriver("jobs.db"))
scheduler = create_scheduler_handler(table_name="scheduled-jobs", driver=sqs)
counts: dict[str, int] = scheduler(None, None)
not_any_sqs: int = SQSQueueDriver  # expect-error
not_any_sqlite: int = SQLiteQueueDriver  # expect-error
not_any_worker: int = Worker  # expect-error
not_any_run: int = run_scheduler  # expect-error


async def welcome_route(user_id: str) -> str:
    async with AsyncJobService(sqs) as async_jobs:
        result = await async_jobs.enqueue(welcome, Welcome(user_id=user_id))
        await async_jobs.enqueue_in(welcome, Welcome(user_id=user_id), 30)
        await async_jobs.enqueue_raw(welcome, {"user_id": user_id})
        await async_jobs.enqueue(welcome, Welcome(user_id=user_id), debounce="30s")
        await async_jobs.enqueue(welcome, Welcome(user_id=user_id), debounce=b"1")  # expect-error
        await async_jobs.enqueue(welcome, {"user_id": user_id})  # expect-error
        counting: AsyncJobHandle[int] = await async_jobs.enqueue(counted_async, Welcome(user_id=""))
        counted_now: int = await counting.wait(timeout=1)
        counted_text: str = await counting.wait()  # expect-error
        now: JobStatus | None = await async_jobs.status(counting.job_id)
        print(counted_now, counted_text, now, await counting.cancel())
        print(await async_jobs.wait(result.job_id))
        return result.job_id


class Audit:
    """A step of the app's own, typed from glasswork.jobs.execution."""

    async def __call__(self, run: JobRun, call_next: CallNext) -> Outcome:
        outcome = await call_next()
        print(run.message.job_name if run.message else None, outcome.kind)
        return outcome


class NotAStep:
    def __call__(self, run: JobRun) -> None:
        pass


keys = DynamoDBIdempotencyStore("idempotency-keys", region="us-east-1")
lambda_handler = bootstrap_worker(module=AppModule, steps=[Audit()], idempotency_store=keys)
bootstrap_worker(module=AppModule, steps=[NotAStep()])  # expect-error
not_any_store: int = DynamoDBIdempotencyStore  # expect-error
not_any_log: int = OutcomeLog  # expect-error


# -- workflows (glasswork.jobs.workflows) ------------------------------------------------------


class Image(BaseModel):
    url: str


class Thumb(BaseModel):
    url: str
    width: int


def make_thumb(image: Image) -> Thumb:
    return Thumb(url=image.url, width=128)


def publish_thumb(thumb: Thumb) -> str:
    return thumb.url


def build_album(thumbs: list[Thumb]) -> int:
    return len(thumbs)


def build_partial_album(thumbs: list[MemberFailure | Thumb]) -> int:
    return sum(1 for t in thumbs if isinstance(t, Thumb))


def count_words(text: str) -> int:
    return len(text.split())


thumb = define_job(name="thumb", handler=make_thumb, schema=Image)
publish = define_job(name="publish", handler=publish_thumb, schema=Thumb)
album = define_job(name="album", handler=build_album, schema=list[Thumb])
partial_album = define_job(
    name="partial-album", handler=build_partial_album, schema=list[MemberFailure | Thumb]
)
album_adapter = define_job(
    name="album-adapter", handler=build_album, schema=TypeAdapter(list[Thumb])
)
words = define_job(name="words", handler=count_words, schema=str)

first_step: Signature[Image, Thumb] = thumb.s(Image(url="a"))
thumb.s(Thumb(url="a", width=1))  # expect-error
thumb.s({"url": "a"})  # expect-error

flow_jobs = JobService(SQLiteQueueDriver("jobs.db"))
published: WorkflowHandle[str] = flow_jobs.enqueue_workflow(chain(thumb.s(Image(url="a")), publish))
published_text: str = published.wait(timeout=5)
published_int: int = published.wait()  # expect-error
flow_state: WorkflowStatus | None = published.status()
three = chain(thumb.s(Image(url="a")), publish, words)
three_count: int = flow_jobs.enqueue_workflow(three).wait()
chain(thumb.s(Image(url="a")), words)  # expect-error
chain(thumb.s(Image(url="a")), publish, publish)  # expect-error

albums = group(thumb.s(Image(url="a")), thumb.s(Image(url="b")))
bare: list[Thumb] = flow_jobs.enqueue_workflow(albums).wait()
album_size: int = flow_jobs.enqueue_workflow(albums.then(album)).wait()
albums.then(album_adapter)
albums.then(publish)  # expect-error
albums.then(partial_album)  # expect-error
lenient = group(thumb.s(Image(url="a")), on_member_failure="continue")
lenient.then(partial_album)
lenient.then(album)  # expect-error
group(thumb.s(Image(url="a")), on_member_failure="ignore")  # expect-error
not_any_chain: int = chain  # expect-error
not_any_handle: int = published  # expect-error
print(published_text, published_int, flow_state, three_count, bare, album_size, first_step)


async def album_route(urls: list[str]) -> int:
    async with AsyncJobService(sqs) as async_jobs:
        handle: AsyncWorkflowHandle[int] = await async_jobs.enqueue_workflow(
            group(*(thumb.s(Image(url=u)) for u in urls)).then(album)
        )
        print(await handle.status())
        wrong: str = await handle.wait()  # expect-error
        print(wrong)
        return await handle.wait(timeout=60)
