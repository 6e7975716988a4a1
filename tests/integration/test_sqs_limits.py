"""Flow limits on SQS (issue 21): the DynamoDB limits table
(``SQSQueueDriver(limits_table=...)``) holds ``rate_limit`` and ``concurrency_limit`` across
``glasswork worker`` processes and Lambda invocations, against the moto server.

The limiter is called from threads at once; two worker processes share one queue; Lambda
"containers" (each its own ``bootstrap_worker``, on its own thread) run batches built from
really received messages and settle them as the event source mapping does. Every handler
records when it started; throttled deliveries must never reach the DLQ nor count attempts.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures_app.limited import paced, per_tenant
from glasswork import define_module
from glasswork.jobs import JobMessage, JobService, Worker, bootstrap_worker, define_job
from glasswork.jobs.drivers.contract import capabilities_of
from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_limits_table
from glasswork.jobs.drivers.sqs.limits import LimitsTable
from glasswork.jobs.limits import JobLimits, RateLimit
from glasswork.jobs.metrics import EMFMetrics
from glasswork.jobs.testing import FakeLambdaContext, sqs_event_from_messages
from integration.test_worker_processes import wait_until
from test_limits import Procs, most_in_any_window, most_running_at_once

from .conftest import REGION, Aws

TABLE = "glasswork-limits"


def _driver(aws: Aws, url: str, *, limits: bool = True) -> SQSQueueDriver:
    return SQSQueueDriver(
        queues={"default": url},
        region=REGION,
        endpoint_url=aws.endpoint,
        limits_table=TABLE if limits else None,
    )


@pytest.fixture
def table(aws: Aws) -> str:
    create_limits_table(TABLE, client=aws.dynamodb)
    return TABLE


# -- the driver and its table ----------------------------------------------------------------


def test_the_driver_has_flow_limits_only_with_a_limits_table(aws: Aws, table: str) -> None:
    url = aws.create_queue("jobs")
    assert capabilities_of(_driver(aws, url)).flow_limits is not None
    assert capabilities_of(_driver(aws, url, limits=False)).flow_limits is None
    from glasswork.jobs import driver_from_url

    from_url = driver_from_url(f"sqs://{REGION}?queue.default={url}&limits_table={TABLE}")
    assert capabilities_of(from_url).flow_limits is not None
    assert "limits_table='glasswork-limits'" in repr(from_url)


def test_a_missing_limits_table_is_a_configuration_error_naming_it(aws: Aws) -> None:
    from glasswork.jobs import ConfigurationError

    limiter = LimitsTable("nowhere", lambda: aws.dynamodb)
    with pytest.raises(ConfigurationError, match="the limits table 'nowhere' does not exist"):
        limiter.take_start("paced", RateLimit(1, 1.0))
    with pytest.raises(ConfigurationError, match="create_limits_table"):
        limiter.take_slot("per_tenant", "t", 1, "m", None, time.time() + 1)


@pytest.mark.parametrize(
    ("attributes", "before"),
    [
        (None, 0),
        ({}, 0),
        ({"GlassworkAttempts": {"StringValue": "2", "DataType": "Number"}}, 2),
        ({"GlassworkAttempts": {"stringValue": "3", "dataType": "Number"}}, 3),
        ({"GlassworkAttempts": {"StringValue": "two"}}, 0),
        ({"GlassworkAttempts": {"StringValue": "-4"}}, 0),
        ({"GlassworkAttempts": "2"}, 0),
    ],
)
def test_the_attempts_a_copy_carries_are_read_with_care(attributes: Any, before: int) -> None:
    from glasswork.jobs.drivers.sqs.attempts import attempts_before

    assert attempts_before(attributes) == before


def test_concurrent_starts_from_threads_never_put_more_than_the_rate_in_any_window(
    aws: Aws, table: str
) -> None:
    grants: list[float] = []
    lock = threading.Lock()
    seen = threading.local()

    def clock() -> float:
        seen.now = time.time()
        return float(seen.now)

    limiter = LimitsTable(table, lambda: aws.dynamodb, clock)
    rate = RateLimit(5, 1.0)
    stop = time.monotonic() + 2.5

    def take() -> None:
        while time.monotonic() < stop:
            if limiter.take_start("paced", rate) is None:
                with lock:
                    grants.append(seen.now)  # the time the slot was taken at

    threads = [threading.Thread(target=take) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # The grants' own times, as written: exact, with no allowance.
    assert most_in_any_window(grants, 1.0) <= 5
    assert len(grants) >= 10  # and it lets starts through, window after window


def test_concurrent_slot_takers_never_hold_more_than_the_limit(aws: Aws, table: str) -> None:
    limiter = LimitsTable(table, lambda: aws.dynamodb)
    holding = most = taken = 0
    lock = threading.Lock()
    stop = time.monotonic() + 2.0

    def work(n: int) -> None:
        nonlocal holding, most, taken
        i = 0
        while time.monotonic() < stop:
            i += 1
            slot = limiter.take_slot("per_tenant", "t", 2, f"m-{n}-{i}", None, time.time() + 30)
            if slot is None:
                continue
            with lock:
                holding += 1
                taken += 1
                most = max(most, holding)
            time.sleep(0.02)
            with lock:
                holding -= 1
            limiter.release(slot)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most <= 2 and taken >= 4
    # Another key has slots of its own.
    assert limiter.take_slot("per_tenant", "u", 2, "x", None, time.time() + 30) is not None


def test_a_slot_whose_lease_ran_out_is_taken_again_and_its_late_release_frees_nothing(
    aws: Aws, table: str
) -> None:
    limiter = LimitsTable(table, lambda: aws.dynamodb)
    dead = limiter.take_slot("j", None, 1, "dead", None, time.time() + 0.5)
    assert dead is not None
    assert limiter.take_slot("j", None, 1, "next", None, time.time() + 30) is None
    time.sleep(0.6)
    taker = limiter.take_slot("j", None, 1, "next", None, time.time() + 30)
    assert taker is not None
    limiter.release(dead)  # the slow holder comes back: the new holder keeps its slot
    assert limiter.take_slot("j", None, 1, "third", None, time.time() + 30) is None


def test_a_throttled_delivery_is_sent_again_delayed_with_its_attempts_and_counted(
    aws: Aws, table: str
) -> None:
    url = aws.create_queue("jobs")
    driver = _driver(aws, url)
    limits = JobLimits(RateLimit(1, 2.0), None)
    driver.enqueue_many([JobMessage.create("paced", {"i": i}) for i in range(2)])
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        got += driver.receive(max_messages=2)
    first, second = got
    second.attempt = 3  # as if two attempts had failed before
    assert driver.acquire(first, "paced", None, limits) is None
    sent_back = time.monotonic()
    wait = driver.acquire(second, "paced", None, limits)
    assert wait is not None and 1.0 < wait <= 2.0
    assert driver.throttle_counts() == {"paced": 1}
    driver.ack(first)
    # The original is gone; a copy comes back after the wait (whole seconds), carrying the
    # two attempts spent before: its delivery is attempt 3 again, not 4.
    [copy] = driver.receive(max_messages=10, wait_seconds=5)
    assert time.monotonic() - sent_back >= 1.5
    assert copy.message_id != second.message_id and copy.body == second.body
    assert copy.attempt == 3
    assert driver.receive(max_messages=10) == []


def test_slots_are_counted_per_key_and_freed_by_the_ack_the_nack_or_the_runs_end(
    aws: Aws, table: str
) -> None:
    url = aws.create_queue("jobs")
    driver = _driver(aws, url)
    for key in "aaab":
        driver.enqueue(JobMessage.create("per_tenant", {}, concurrency_key=key))
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < 4 and time.monotonic() < deadline:
        got += driver.receive(max_messages=4)
    by_key = {key: [r for r in got if f'"concurrencyKey":"{key}"' in r.body] for key in "ab"}
    first, second, third = by_key["a"]
    limits = JobLimits(None, 2)
    assert driver.acquire(first, "per_tenant", "a", limits) is None
    assert driver.acquire(second, "per_tenant", "a", limits) is None
    assert driver.acquire(third, "per_tenant", "a", limits) is not None  # put back, unspent
    assert driver.acquire(by_key["b"][0], "per_tenant", "b", limits) is None
    driver.ack(first)
    [back] = driver.receive(max_messages=10, wait_seconds=5)
    assert back.attempt == 1
    assert driver.acquire(back, "per_tenant", "a", limits) is None
    driver.nack(second)  # a retry frees its slot too
    limiter = driver.limits
    assert limiter is not None
    probe = limiter.take_slot("per_tenant", "a", 2, "probe", None, time.time() + 30)
    assert probe is not None
    # The run's end (the ReleaseSlots step) frees the slot of the job it ran.
    [step] = [s for s in driver.run_steps() if type(s).__name__ == "ReleaseSlots"]
    assert repr(step) == "ReleaseSlots('glasswork-limits')"
    limiter.release_job(json.loads(back.body)["jobId"])
    assert limiter.take_slot("per_tenant", "a", 2, "probe2", None, time.time() + 30) is not None


def test_a_throttled_start_is_taken_back_in_the_status_table(aws: Aws, table: str) -> None:
    from glasswork.jobs.drivers.sqs import create_status_table

    create_status_table("statuses", client=aws.dynamodb)
    url = aws.create_queue("jobs")
    driver = SQSQueueDriver(
        queues={"default": url},
        region=REGION,
        endpoint_url=aws.endpoint,
        limits_table=TABLE,
        status_table="statuses",
    )
    message = JobMessage.create("one", {})
    driver.enqueue(message)
    [received] = driver.receive(wait_seconds=5)
    held = driver.limits
    assert held is not None
    held.take_slot("one", None, 1, "someone", None, time.time() + 30)
    assert driver.record_start(received)
    assert driver.acquire(received, "one", None, JobLimits(None, 1)) is not None
    status = driver.job_status(message.job_id)
    assert status is not None and status.state == "pending" and status.attempts == 0


# -- long-running worker processes ---------------------------------------------------------


@pytest.fixture
def sqs_procs(aws: Aws, table: str, tmp_path: Path) -> Iterator[tuple[Procs, Any, str]]:
    """``glasswork worker`` processes on one queue with a 2-second visibility timeout (and a
    DLQ after 3 receives), a driver to enqueue with, and the DLQ's URL."""
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq, max_receive_count=3, visibility_timeout=2)
    p = Procs(
        tmp_path,
        f"sqs://{REGION}?queue.default={url}&limits_table={table}&endpoint_url={aws.endpoint}",
    )
    try:
        yield p, _driver(aws, url), dlq
    finally:
        p.stop()


def test_a_10_per_second_job_never_starts_more_than_10_times_in_any_second_across_2_sqs_workers(
    sqs_procs: tuple[Procs, Any, str], aws: Aws
) -> None:
    p, driver, dlq = sqs_procs
    for name in ("w1", "w2"):
        p.start(name, "--concurrency", "4")
    JobService(driver).enqueue_many(paced, [{"key": f"p-{i}"} for i in range(35)])
    wait_until(lambda: len(p.runs()) >= 35, timeout=60, what="every paced job to start")
    runs = p.runs()
    assert len(runs) == 35 and len({r["pid"] for r in runs}) == 2
    # Throttles spent no attempt, though most of the jobs were held back several times.
    assert {r["attempt"] for r in runs} == {1}
    # As on SQL (tests/test_limits.py): a quarter of the window for the handlers' dispatch.
    starts = [r["started"] for r in runs]
    assert most_in_any_window(starts, 0.75) <= 10
    assert max(starts) - min(starts) >= 3.0 - 0.25 * 3
    assert driver.throttle_counts()["paced"] > 0
    assert aws.drain(dlq) == []


def test_concurrency_limit_2_never_has_3_running_for_one_key_across_2_sqs_workers(
    sqs_procs: tuple[Procs, Any, str], aws: Aws
) -> None:
    p, driver, dlq = sqs_procs
    for name in ("w1", "w2"):
        p.start(name, "--concurrency", "4")
    payloads = [
        {"key": f"{tenant}-{i}", "tenant": tenant, "sleep": 0.3}
        for i in range(6)
        for tenant in ("t1", "t2")
    ]
    JobService(driver).enqueue_many(per_tenant, payloads)
    wait_until(
        lambda: sum(r["finished"] is not None for r in p.runs()) == 12,
        timeout=60,
        what="every job to finish",
    )
    runs = p.runs()
    assert len(runs) == 12 and {r["attempt"] for r in runs} == {1}
    for tenant in ("t1", "t2"):
        assert most_running_at_once([r for r in runs if r["key"].startswith(tenant)]) <= 2
    assert most_running_at_once(runs) >= 3  # the two tenants did run side by side
    assert aws.drain(dlq) == []


def test_an_sqs_worker_killed_holding_a_slot_frees_it_within_its_lease(
    sqs_procs: tuple[Procs, Any, str], tmp_path: Path
) -> None:
    p, driver, _ = sqs_procs
    victim = p.start("victim", "--concurrency", "2")
    jobs = JobService(driver)
    hold = tmp_path / "release"
    held = [{"key": f"held-{i}", "tenant": "t", "until": str(hold), "sleep": 60} for i in range(2)]
    jobs.enqueue_many(per_tenant, held)
    wait_until(lambda: len(p.runs()) == 2, timeout=20, what="the victim to hold both slots")
    time.sleep(2.5)  # past a lease: the victim renews its leases and its slots meanwhile
    assert len(p.runs()) == 2  # so nobody else ran them
    limiter = LimitsTable(TABLE, lambda: driver.dynamodb)
    assert limiter.take_slot("per_tenant", "t", 2, "probe", None, time.time() + 1) is None
    p.start("survivor", "--concurrency", "2")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    killed_at = time.time()
    hold.touch()
    jobs.enqueue(per_tenant, {"key": "after", "tenant": "t"})
    wait_until(
        lambda: any(r["key"] == "after" and r["finished"] for r in p.runs()),
        timeout=30,
        what="the job after the kill to run",
    )
    [after] = [r for r in p.runs() if r["key"] == "after"]
    # The lease is 2 s, and a slot lasts two thirds of it past its last renewal: free
    # within the lease; then a put-back's 1-second delay and a receive.
    assert after["started"] - killed_at < 2.0 + 1.0 + 2.0
    assert after["attempt"] == 1
    p.stop()
    assert "throttled=" in p.log("survivor")  # it waited for the dead worker's slots


def test_a_job_throttled_far_more_often_than_max_receive_count_still_runs_and_never_dead_letters(
    aws: Aws, table: str
) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq, max_receive_count=2, visibility_timeout=5)
    driver = _driver(aws, url)
    runs: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        with lock:
            runs.append((payload["key"], ctx.attempt))
        time.sleep(payload["sleep"])

    # One at a time, one attempt each: every throttle counted as an attempt, or as a receive
    # of the same message, would dead-letter them. The first holds the slot 4 s: each of
    # the others is held back about once a second meanwhile, twice the redrive's allowance.
    job = define_job(name="one", handler=handler, concurrency_limit=1, retry=False)
    jobs = JobService(driver)
    jobs.enqueue(job, {"key": "first", "sleep": 4})
    worker = Worker(
        module=define_module(name="m", jobs=[job]),
        driver=driver,
        concurrency=6,
        install_signal_handlers=False,
        wait_seconds=1,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: len(runs) == 1, timeout=20, what="the first job to start")
        jobs.enqueue_many(job, [{"key": f"k{i}", "sleep": 0.2} for i in range(6)])
        wait_until(lambda: len(runs) == 7, timeout=60, what="every job to run")
    finally:
        worker.stop()
        thread.join(30)
    assert sorted(k for k, _ in runs) == ["first"] + [f"k{i}" for i in range(6)]
    assert {attempt for _, attempt in runs} == {1}
    assert driver.throttle_counts()["one"] > 2 * 6  # more than maxReceiveCount times each
    assert worker.summary.throttled == driver.throttle_counts()["one"]
    assert aws.drain(dlq) == []


@pytest.mark.parametrize("max_receives", [2, 20])
def test_on_a_fifo_queue_throttles_keep_group_order_spend_no_attempt_and_never_dead_letter(
    aws: Aws, table: str, max_receives: int
) -> None:
    dlq = aws.create_queue("jobs-dlq.fifo")
    url = aws.create_queue(
        "jobs.fifo", dead_letter=dlq, max_receive_count=max_receives, visibility_timeout=5
    )
    driver = _driver(aws, url)
    runs: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.3)
        with lock:
            runs.append((payload["key"], ctx.attempt))

    # Groups compete for one slot: throttled many times each, more than maxReceiveCount.
    job = define_job(
        name="one",
        handler=handler,
        concurrency_limit=1,
        retry=False,
        group_id=lambda p: p["group"],
    )
    JobService(driver).enqueue_many(
        job, [{"key": f"{g}{i}", "group": g} for i in range(3) for g in "abc"]
    )
    worker = Worker(
        module=define_module(name="m", jobs=[job]),
        driver=driver,
        concurrency=3,
        # One message a receive: SQS hands out nothing more of a group while one is in
        # flight, so the worker's threads never run two of a group at once, or out of order.
        batch_size=1,
        install_signal_handlers=False,
        wait_seconds=1,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: len(runs) == 9, timeout=90, what="every job to run")
    finally:
        worker.stop()
        thread.join(30)
    assert {attempt for _, attempt in runs} == {1}
    assert driver.throttle_counts()["one"] > 2
    assert aws.drain(dlq) == []
    assert sorted(k for k, _ in runs) == sorted(f"{g}{i}" for i in range(3) for g in "abc")
    if max_receives == 20:
        # Held back by visibility, far from maxReceiveCount: each group ran in order. (A
        # copy that steps around maxReceiveCount joins the back of its group: docs/sqs.md.)
        for g in "abc":
            assert [k for k, _ in runs if k[0] == g] == [f"{g}{i}" for i in range(3)]


# -- the Lambda handler --------------------------------------------------------------------


class Lambdas:
    """Lambda "containers" on threads, each its own handler, taking batches of real
    messages from the queue and settling them as the event source mapping does."""

    def __init__(self, aws: Aws, url: str, make: Callable[[], Any], batch: int = 5) -> None:
        self.batch = batch
        self.aws = aws
        self.url = url
        self.arn = aws.queue_arn(url)
        self.make = make
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.reported = 0

    def run(self, containers: int) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._poll) for _ in range(containers)]
        for t in threads:
            t.start()
        return threads

    def _poll(self) -> None:
        handler = self.make()
        sqs = self.aws.sqs
        while not self.stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=self.batch,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                continue
            event = sqs_event_from_messages(messages, self.arn)
            try:
                response = handler(event, FakeLambdaContext(60_000))
            except Exception as exc:  # a whole batch returned: nothing deleted
                self.errors.append(exc)
                continue
            failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
            self.reported += len(failed)
            for m in messages:
                if m["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def test_lambda_containers_hold_a_rate_limit_and_concurrency_with_no_attempt_spent(
    aws: Aws, table: str
) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq, max_receive_count=2, visibility_timeout=10)
    driver = _driver(aws, url)
    starts: list[tuple[str, float, float, int]] = []
    lock = threading.Lock()

    def record(payload: dict[str, Any], ctx: Any) -> None:
        begun = time.time()
        time.sleep(payload.get("sleep", 0))
        with lock:
            starts.append((payload["key"], begun, time.time(), ctx.attempt))

    rated = define_job(name="rated", handler=record, rate_limit="10/s", retry=False)
    slotted = define_job(
        name="slotted",
        handler=record,
        concurrency_limit=2,
        concurrency_key=lambda p: p["tenant"],
        retry=False,
    )
    module = define_module(name="m", jobs=[rated, slotted])
    lines: list[str] = []
    jobs = JobService(driver)
    jobs.enqueue_many(rated, [{"key": f"r-{i}"} for i in range(30)])
    jobs.enqueue_many(slotted, [{"key": f"s-{i}", "tenant": "t", "sleep": 0.3} for i in range(8)])
    lambdas = Lambdas(
        aws,
        url,
        lambda: bootstrap_worker(
            module=module,
            driver=_driver(aws, url),
            check_setup=False,
            metrics=EMFMetrics(write=lines.append),
        ),
    )
    threads = lambdas.run(4)
    try:
        wait_until(lambda: len(starts) == 38, timeout=90, what="every job to run")
    finally:
        lambdas.stop.set()
        for t in threads:
            t.join(30)
    assert lambdas.errors == [] and lambdas.reported == 0
    assert {attempt for *_, attempt in starts} == {1}
    rate_starts = [begun for key, begun, _, _ in starts if key.startswith("r-")]
    assert most_in_any_window(rate_starts, 0.75) <= 10
    assert max(rate_starts) - min(rate_starts) >= 2.0 - 0.25 * 2  # 30 starts: 2 full windows
    slot_runs = [
        {"started": begun, "finished": ended} for key, begun, ended, _ in starts if key[0] == "s"
    ]
    assert most_running_at_once(slot_runs) <= 2
    counts = driver.throttle_counts()
    emf = [json.loads(line) for line in lines]
    assert sum(d.get("Throttled", 0) for d in emf) == sum(counts.values()) > 0
    assert aws.drain(dlq) == []


@pytest.mark.parametrize("max_receives", [2, 30])
def test_lambda_on_a_fifo_queue_reports_throttled_records_and_keeps_each_group_in_order(
    aws: Aws, table: str, max_receives: int
) -> None:
    dlq = aws.create_queue("jobs-dlq.fifo")
    url = aws.create_queue(
        "jobs.fifo", dead_letter=dlq, max_receive_count=max_receives, visibility_timeout=3
    )
    driver = _driver(aws, url)
    runs: list[tuple[str, int]] = []
    lock = threading.Lock()

    def handler(payload: dict[str, Any], ctx: Any) -> None:
        time.sleep(0.2)
        with lock:
            runs.append((payload["key"], ctx.attempt))

    job = define_job(
        name="one", handler=handler, concurrency_limit=1, group_id=lambda p: p["group"]
    )
    module = define_module(name="m", jobs=[job])
    JobService(driver).enqueue_many(
        job, [{"key": f"{g}{i}", "group": g} for i in range(3) for g in "abc"]
    )
    lambdas = Lambdas(
        aws,
        url,
        lambda: bootstrap_worker(module=module, driver=_driver(aws, url), check_setup=False),
        batch=1,  # BatchSize 1: no record waits behind another of its group (docs/limits.md)
    )
    threads = lambdas.run(3)
    try:
        wait_until(lambda: len(runs) == 9, timeout=120, what="every job to run")
    finally:
        lambdas.stop.set()
        for t in threads:
            t.join(30)
    assert lambdas.errors == []  # a throttle is no function error
    assert lambdas.reported > 0  # FIFO: throttled records stay on the queue, reported
    assert driver.throttle_counts()["one"] >= lambdas.reported
    assert sorted(k for k, _ in runs) == sorted(f"{g}{i}" for i in range(3) for g in "abc")
    # Throttles spend no attempt, and none moves a job to the DLQ, however small
    # maxReceiveCount is.
    assert {attempt for _, attempt in runs} == {1}
    assert aws.drain(dlq) == []
    if max_receives == 30:
        # Far from maxReceiveCount a throttled record waits at the head of its group (a
        # copy stepping around a near limit joins the back of the group: docs/sqs.md).
        for g in "abc":
            assert [k for k, _ in runs if k[0] == g] == [f"{g}{i}" for i in range(3)]
