"""The driver contract suite: the behaviour ``docs/drivers.md`` promises, as pytest tests a
driver author runs on their own driver.

In a test module of yours, import the suite and give it a ``driver_factory`` fixture::

    import pytest
    from glasswork.jobs.testing.contract import *  # noqa: F403 (the tests and fixtures)

    @pytest.fixture
    def driver_factory(tmp_path):
        opened = []

        def make(*, lease_seconds=None):
            opened.append(MyDriver(tmp_path / "jobs", lease=lease_seconds or 30))
            return opened[-1]

        yield make
        for driver in opened:
            driver.close()

Every test of the suite is then collected in your module. The factory's rules:

* ``make()`` returns a new driver; every call within one test opens a driver onto the *same*
  store (two workers on one backend), and that store is empty when the test starts.
* ``make(lease_seconds=s)`` returns one whose leases (``visibility_timeout``) last about ``s``
  seconds (the lease tests ask for half a second; whole seconds are fine, the tests read the
  lease back).
* Jobs go to the queues named in :data:`QUEUES`; the driver must take them.

The core tests run on every driver. Each capability group's tests run on a driver that has
the group (:func:`~glasswork.jobs.drivers.contract.capabilities_of`) and are skipped, naming
the group, on one that lacks it (the priority tests, on one whose ``priorities`` is false;
the fairness tests, on one whose ``fairness`` is not ``"round-robin"``).
What a driver may leave out of the core is said by a ``contract_options`` fixture
returning :class:`ContractOptions` (define it in the same module, after the import, to
replace the default): whether it keeps unique keys, and the tests it is known to fail (run
as strict ``xfail``, so a fix shows).

``JobService.enqueue(..., debounce=)`` is refused on a driver without the ``Debounce``
group (a core test); :class:`TestDebounce` holds one with it to what debouncing promises.

Not covered here: ``TransactionalEnqueue`` (it needs your database's connection),
``RunSteps`` and ``IdempotencyProvider`` (what they return is checked by the worker's own
use of it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import pytest

from ..drivers.contract import (
    CAPABILITY_GROUPS,
    Capabilities,
    QueueDriver,
    capabilities_of,
    driver_name,
    lease_seconds,
    lookup_scope,
)
from ..drivers.records import (
    DeadLetterQuery,
    EnqueueResult,
    FinalStatus,
    JobStatus,
    OutcomeCount,
    QueueStats,
    ReceivedMessage,
    WorkerBeat,
)
from ..errors import ConfigurationError, DuplicateJobError
from ..limits import JobLimits, RateLimit
from ..message import JobMessage

__all__ = [
    "QUEUES",
    "ContractOptions",
    "DriverFactory",
    "TestBatchAck",
    "TestBatchNack",
    "TestCancellation",
    "TestClaimLimits",
    "TestClosing",
    "TestConfiguredQueues",
    "TestConsuming",
    "TestDeadLetterAdmin",
    "TestDeadLetterSearch",
    "TestDebounce",
    "TestDelayLimit",
    "TestDelays",
    "TestFairness",
    "TestFlowLimits",
    "TestHandBack",
    "TestHeartbeats",
    "TestJobFinder",
    "TestLeaseExtension",
    "TestNativeAsync",
    "TestOutcomeStore",
    "TestPendingCount",
    "TestPeriodicClaims",
    "TestPriorities",
    "TestProducing",
    "TestQueueCounts",
    "TestSetupCheck",
    "TestStatusBatches",
    "TestStatusStore",
    "TestUniqueKeys",
    "TestWorkflows",
    "contract_options",
    "driver",
    "known_gaps",
]

#: The queues the suite puts jobs on.
QUEUES = ("default", "other")
#: How long the suite waits for something the driver should do soon (a delay coming due, a
#: message long-polled): generous, since a waiting test ends as soon as it happens.
PATIENCE = 15.0


class DriverFactory(Protocol):
    """What the ``driver_factory`` fixture returns (see the module)."""

    def __call__(self, *, lease_seconds: float | None = None) -> QueueDriver: ...


@dataclass(frozen=True)
class ContractOptions:
    """What a driver may leave out, and the tests it is known to fail.

    ``unique_keys``: the driver keeps unique keys (``DuplicateJobError`` for a second pending
    job of the same ``job_name`` and ``unique_key``); False skips those tests.
    ``known_gaps``: test function name -> why the driver cannot pass it; such a test runs as
    a strict ``xfail``."""

    unique_keys: bool = True
    known_gaps: Mapping[str, str] = field(default_factory=dict)


@pytest.fixture
def contract_options() -> ContractOptions:
    """The default: unique keys kept, no known gaps. Replace it in your module."""
    return ContractOptions()


@pytest.fixture(autouse=True)
def known_gaps(request: pytest.FixtureRequest, contract_options: ContractOptions) -> None:
    """Runs each test named in ``contract_options.known_gaps`` as a strict xfail."""
    name = getattr(request.function, "__name__", "")
    reason = contract_options.known_gaps.get(name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.fixture
def driver(driver_factory: DriverFactory) -> QueueDriver:
    """A driver from the author's factory, on an empty store."""
    return driver_factory()


# -- helpers -----------------------------------------------------------------------------------


def job(name: str = "contract-job", payload: object = None, **options: Any) -> JobMessage:
    """A message for the suite's tests."""
    return JobMessage.create(name, payload, **options)


def group(driver: object, field_name: str) -> Any:
    """``driver`` as the capability group ``field_name``, or the test skipped naming it."""
    found = getattr(capabilities_of(driver), field_name)
    if found is None:
        protocol = dict(CAPABILITY_GROUPS)[field_name].__name__
        pytest.skip(f"the {driver_name(driver)} driver has no {protocol} ({field_name})")
    return found


def consuming(driver: object) -> Any:
    return group(driver, "consuming")


def receive_exactly(
    driver: Any, count: int, queues: Sequence[str] | None = None, within: float = PATIENCE
) -> list[ReceivedMessage]:
    """``count`` deliveries, waiting up to ``within`` seconds for them to come due; fails
    with what came when fewer do."""
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"expected {count} deliveries within {within} s, got {len(got)}")
        got.extend(driver.receive(queues, count - len(got), min(1.0, left)))
    return got


def nothing_due(driver: Any, queues: Sequence[str] | None = None) -> bool:
    """Whether a receive now finds nothing (what it found is handed back)."""
    found = driver.receive(queues, 10, 0.0)
    for r in found:
        driver.nack(r)
    return not found


def eventually(check: Callable[[], bool], what: str, within: float = PATIENCE) -> None:
    """Wait up to ``within`` seconds for ``check()``; fails saying ``what`` did not happen."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.05)


def payloads(received: Sequence[ReceivedMessage]) -> list[Any]:
    return [JobMessage.from_json(r.body).payload for r in received]


def short_lease(driver_factory: DriverFactory) -> tuple[Any, float]:
    """A driver whose leases are short, and their length."""
    made = driver_factory(lease_seconds=0.5)
    lease = lease_seconds(group(made, "lease_extension"))
    if not isinstance(lease, int | float) or not 0 < lease <= 5:
        pytest.fail(
            f"driver_factory(lease_seconds=0.5) made a driver whose lease is {lease!r} s: the "
            "lease tests need one of a few seconds at most"
        )
    return made, float(lease)


def caps(driver: object) -> Capabilities:
    return capabilities_of(driver)


# -- the core: producing -----------------------------------------------------------------------


class TestProducing:
    """``enqueue``, ``enqueue_in``, ``enqueue_at``, ``enqueue_many``, ``message_limit`` and
    ``dead_letter``: what every driver does."""

    def test_enqueue_answers_with_the_job_and_queue_and_no_due_time(self, driver: Any) -> None:
        message = job(queue="other")
        result = driver.enqueue(message)
        assert isinstance(result, EnqueueResult)
        assert (result.job_id, result.queue, result.scheduled_at) == (message.job_id, "other", None)
        assert isinstance(result.message_id, str)
        assert result.message_id

    def test_enqueue_in_says_when_the_job_comes_due(self, driver: Any) -> None:
        before = datetime.now(UTC)
        result = driver.enqueue_in(job(), 120)
        assert result.scheduled_at is not None
        assert result.scheduled_at.tzinfo is not None
        assert before + timedelta(seconds=119) <= result.scheduled_at
        assert result.scheduled_at <= datetime.now(UTC) + timedelta(seconds=125)

    def test_enqueue_at_a_past_time_runs_now_and_a_future_time_later(self, driver: Any) -> None:
        past = driver.enqueue_at(job(), datetime.now(UTC) - timedelta(days=1))
        assert past.scheduled_at is None
        west = timezone(timedelta(hours=-5))
        run_at = datetime.now(west) + timedelta(minutes=10)
        future = driver.enqueue_at(job(), run_at)
        assert future.scheduled_at is not None
        assert abs((future.scheduled_at - run_at).total_seconds()) < 5

    def test_enqueue_many_answers_each_message_in_order(self, driver: Any) -> None:
        messages = [job(payload=i) for i in range(12)]
        results = driver.enqueue_many(messages)
        assert [r.job_id for r in results] == [m.job_id for m in messages]
        assert len({r.message_id for r in results}) == 12
        assert all(r.scheduled_at is None for r in results)
        delayed = driver.enqueue_many([job(), job()], delay_seconds=120)
        assert all(r.scheduled_at is not None for r in delayed)

    def test_message_limit_is_a_positive_number_of_bytes(self, driver: Any) -> None:
        for queue in QUEUES:
            limit = driver.message_limit(queue)
            assert isinstance(limit, int)
            assert limit > 0

    def test_dead_letter_says_whether_it_kept_the_message(self, driver: Any) -> None:
        kept = driver.dead_letter(job().encode(), "PermanentJobError: no", queue="default")
        assert isinstance(kept, bool)
        if caps(driver).dead_letter_traceback:
            assert isinstance(
                driver.dead_letter("not json", "bad", queue="other", traceback="Traceback ..."),
                bool,
            )

    def test_debounce_is_done_with_the_group_and_refused_clearly_without_it(
        self, driver: Any
    ) -> None:
        """``JobService.enqueue(..., debounce=)`` goes through the ``Debounce`` group; a
        driver without it is refused with a :class:`ConfigurationError` naming the job,
        nothing sent."""
        from ..definition import define_job
        from ..service import JobService

        if caps(driver).async_def:
            pytest.skip(f"JobService does not call the {driver_name(driver)} driver's coroutines")
        digest = define_job(
            name="contract-digest", schema=str, unique=lambda p: "k", handler=lambda p: None
        )
        service = JobService(driver, default_queue="default")
        if caps(driver).debounce is None:
            with pytest.raises(ConfigurationError, match=r"contract-digest.*Debounce"):
                service.enqueue(digest, "x", debounce="1s")
            if caps(driver).consuming is not None:
                assert nothing_due(driver)
            return
        first = service.enqueue(digest, "first", debounce=60)
        second = service.enqueue(digest, "second", debounce=60)
        assert first.job_id != second.job_id
        assert second.scheduled_at is not None


# -- the core: consuming -----------------------------------------------------------------------


class TestConsuming:
    """``receive``, ``ack`` and ``nack`` (the ``Consuming`` group): claims, attempts,
    queues, redelivery."""

    def test_a_received_message_is_the_enqueued_text_on_its_first_attempt(
        self, driver: Any
    ) -> None:
        consuming(driver)
        message = job(payload={"n": 1}, queue="other")
        sent = driver.enqueue(message)
        [got] = receive_exactly(driver, 1)
        assert got.body == message.encode()
        assert (got.message_id, got.queue, got.attempt) == (sent.message_id, "other", 1)

    def test_each_message_is_claimed_once_and_hidden_while_held(self, driver: Any) -> None:
        consuming(driver)
        sent = driver.enqueue_many([job(payload=i) for i in range(5)])
        first = driver.receive(None, 2, 0.0)
        assert 0 < len(first) <= 2
        rest = receive_exactly(driver, 5 - len(first))
        assert sorted(r.message_id for r in first + rest) == sorted(r.message_id for r in sent)
        assert nothing_due(driver)

    def test_receive_takes_only_the_queues_asked_for(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue(job(payload="d", queue="default"))
        driver.enqueue(job(payload="o", queue="other"))
        [other] = receive_exactly(driver, 1, ["other"])
        assert other.queue == "other"
        assert payloads([other]) == ["o"]
        assert nothing_due(driver, ["other"])
        [rest] = receive_exactly(driver, 1, None)
        assert rest.queue == "default"

    def test_receive_waits_for_a_message_that_comes_due(self, driver: Any) -> None:
        consuming(driver)
        sent = driver.enqueue_in(job(), 0.5)
        deadline = time.monotonic() + PATIENCE
        got: list[ReceivedMessage] = []
        while not got and time.monotonic() < deadline:
            got = driver.receive(None, 10, 5.0)
        assert [r.message_id for r in got] == [sent.message_id]

    def test_nack_delivers_again_as_the_next_attempt(self, driver: Any) -> None:
        consuming(driver)
        message = job(payload="again")
        driver.enqueue(message)
        [first] = receive_exactly(driver, 1)
        driver.nack(first)
        [second] = receive_exactly(driver, 1)
        assert (second.message_id, second.body) == (first.message_id, message.encode())
        assert second.attempt == 2

    def test_nack_with_a_delay_holds_the_message_back_that_long(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue(job())
        [first] = receive_exactly(driver, 1)
        nacked_at = time.monotonic()
        driver.nack(first, delay_seconds=1)
        assert nothing_due(driver)
        [again] = receive_exactly(driver, 1)
        assert time.monotonic() - nacked_at >= 0.9
        assert (again.message_id, again.attempt) == (first.message_id, 2)

    def test_an_acked_message_is_gone(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue(job(payload="done"))
        driver.enqueue(job(payload="kept"))
        received = receive_exactly(driver, 2)
        done = next(r for r in received if payloads([r]) == ["done"])
        kept = next(r for r in received if r is not done)
        driver.ack(done)
        driver.nack(kept)
        [again] = receive_exactly(driver, 1)
        assert payloads([again]) == ["kept"]
        driver.ack(again)
        assert nothing_due(driver)
        if caps(driver).stats is not None:
            eventually(
                lambda: all(s.pending == 0 for s in driver.stats().values()),
                "acked messages still counted",
            )

    def test_a_dead_lettered_message_is_not_delivered(self, driver: Any) -> None:
        consuming(driver)
        driver.dead_letter(job().encode(), "PermanentJobError: no", queue="default")
        assert nothing_due(driver)


class TestDelays:
    """Due times: delays of any length, shorter ones first (needs ``Consuming``)."""

    def test_only_due_messages_are_delivered_and_a_shorter_delay_comes_due_first(
        self, driver: Any
    ) -> None:
        consuming(driver)
        driver.enqueue_in(job(payload="later"), 120)
        driver.enqueue_in(job(payload="sooner"), 1)
        driver.enqueue_at(job(payload="past"), datetime.now(UTC) - timedelta(hours=1))
        driver.enqueue(job(payload="now"))
        assert sorted(payloads(receive_exactly(driver, 2))) == ["now", "past"]
        assert payloads(receive_exactly(driver, 1)) == ["sooner"]
        assert nothing_due(driver)

    def test_a_delay_of_days_is_kept_and_not_delivered_early(self, driver: Any) -> None:
        consuming(driver)
        far = driver.enqueue_in(job(), 3 * 86400)
        assert far.scheduled_at is not None
        assert far.scheduled_at > datetime.now(UTC) + timedelta(days=2, hours=23)
        assert nothing_due(driver)

    def test_enqueue_many_with_a_delay_holds_every_message_back(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue_many([job(payload=i) for i in range(3)], delay_seconds=1)
        assert nothing_due(driver)
        assert sorted(payloads(receive_exactly(driver, 3))) == [0, 1, 2]


# -- the core: unique keys ---------------------------------------------------------------------


class TestUniqueKeys:
    """A unique key held by a pending job refuses a second one (``ContractOptions``)."""

    @pytest.fixture(autouse=True)
    def _keeps_keys(self, contract_options: ContractOptions, driver: Any) -> None:
        if not contract_options.unique_keys:
            pytest.skip(f"the {driver_name(driver)} driver keeps no unique keys")

    def test_a_pending_key_is_refused_per_job_name_delayed_or_not(self, driver: Any) -> None:
        first = driver.enqueue(job("welcome", unique_key="u1"))
        driver.enqueue(job("other-job", unique_key="u1"))  # keys are per job name
        with pytest.raises(DuplicateJobError) as refused:
            driver.enqueue(job("welcome", unique_key="u1"))
        assert refused.value.existing_job_id == first.job_id
        with pytest.raises(DuplicateJobError):
            driver.enqueue_in(job("welcome", unique_key="u1"), 60)
        delayed = driver.enqueue_in(job("later", unique_key="u2"), 60)
        with pytest.raises(DuplicateJobError) as also:
            driver.enqueue(job("later", unique_key="u2"))
        assert also.value.existing_job_id == delayed.job_id

    def test_a_key_is_held_while_its_job_is_in_flight_or_retried(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue(job("welcome", unique_key="u1"))
        [claimed] = receive_exactly(driver, 1)
        with pytest.raises(DuplicateJobError):
            driver.enqueue(job("welcome", unique_key="u1"))
        driver.nack(claimed)
        with pytest.raises(DuplicateJobError):
            driver.enqueue(job("welcome", unique_key="u1"))

    def test_a_key_is_free_once_its_job_is_acked(self, driver: Any) -> None:
        consuming(driver)
        driver.enqueue_many([job("welcome", unique_key=k) for k in ("u1", "u2", "u3")])
        received = receive_exactly(driver, 3)
        driver.ack(received[0])
        batch = capabilities_of(driver).batch_ack
        if batch is not None:
            batch.ack_many(received[1:])
        else:
            for r in received[1:]:
                driver.ack(r)
        driver.enqueue_many([job("welcome", unique_key=k) for k in ("u1", "u2", "u3")])

    def test_a_batch_with_a_taken_key_stores_nothing(self, driver: Any) -> None:
        driver.enqueue(job("welcome", unique_key="taken"))
        with pytest.raises(DuplicateJobError, match="taken"):
            driver.enqueue_many(
                [job("welcome", unique_key="new"), job("welcome", unique_key="taken")]
            )
        with pytest.raises(DuplicateJobError, match="twice"):
            driver.enqueue_many([job("welcome", unique_key="twice") for _ in range(2)])
        # Neither refused batch kept a key.
        driver.enqueue(job("welcome", unique_key="new"))
        driver.enqueue(job("welcome", unique_key="twice"))

    def test_threads_racing_for_one_key_admit_exactly_one(self, driver: Any) -> None:
        accepted: list[EnqueueResult] = []
        refused: list[DuplicateJobError] = []
        barrier = threading.Barrier(8)

        def attempt() -> None:
            barrier.wait()
            try:
                accepted.append(driver.enqueue(job("welcome", unique_key="same")))
            except DuplicateJobError as exc:
                refused.append(exc)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (len(accepted), len(refused)) == (1, 7)
        assert {e.existing_job_id for e in refused} == {accepted[0].job_id}


# -- leases ------------------------------------------------------------------------------------


class TestLeaseExtension:
    """Leases that run out, stale receipts and ``extend_leases`` (the ``LeaseExtension``
    group; the factory's ``lease_seconds``)."""

    def test_a_message_whose_lease_ran_out_is_delivered_again(
        self, driver_factory: DriverFactory
    ) -> None:
        driver, lease = short_lease(driver_factory)
        driver.enqueue(job())
        [first] = receive_exactly(driver, 1)
        [second] = receive_exactly(driver, 1, within=lease + PATIENCE)
        assert second.message_id == first.message_id
        assert second.attempt == 2

    def test_a_stale_receipt_settles_nothing(self, driver_factory: DriverFactory) -> None:
        driver, lease = short_lease(driver_factory)
        driver.enqueue(job())
        [first] = receive_exactly(driver, 1)
        [second] = receive_exactly(driver, 1, within=lease + PATIENCE)
        # The new holder keeps its lease, so a slow machine cannot let it run out too.
        assert driver.extend_leases([second], 60) == 1
        # The first holder's late ack, release or extension must not touch the new delivery.
        driver.ack(first)
        driver.nack(first)
        assert driver.extend_leases([first], 60) == 0
        assert nothing_due(driver)
        driver.nack(second)
        [third] = receive_exactly(driver, 1)
        assert (third.message_id, third.attempt) == (first.message_id, 3)

    def test_extend_leases_keeps_a_message_hidden_past_its_lease(
        self, driver_factory: DriverFactory
    ) -> None:
        driver, lease = short_lease(driver_factory)
        driver.enqueue(job())
        [held] = receive_exactly(driver, 1)
        extended_at = time.monotonic()
        assert driver.extend_leases([held], lease * 4) == 1
        while time.monotonic() - extended_at < lease * 2:
            assert driver.receive(None, 10, 0.2) == []
        driver.ack(held)
        assert driver.extend_leases([held], lease * 4) == 0


class TestBatchAck:
    """``ack_many`` (the ``BatchAck`` group)."""

    def test_ack_many_removes_each(self, driver: Any) -> None:
        group(driver, "batch_ack")
        driver.enqueue_many([job(payload=i) for i in range(3)])
        driver.ack_many(receive_exactly(driver, 3))
        assert nothing_due(driver)
        if capabilities_of(driver).stats is not None:
            eventually(
                lambda: all(s.pending == 0 for s in driver.stats().values()),
                "acked messages still counted",
            )


class TestBatchNack:
    """``nack_many`` (the ``BatchNack`` group)."""

    def test_nack_many_delivers_each_again_as_the_next_attempt(self, driver: Any) -> None:
        group(driver, "batch_nack")
        driver.enqueue_many([job(payload=i) for i in range(3)])
        driver.nack_many(receive_exactly(driver, 3))
        assert sorted(r.attempt for r in receive_exactly(driver, 3)) == [2, 2, 2]

    def test_nack_many_with_a_delay_holds_them_back(self, driver: Any) -> None:
        group(driver, "batch_nack")
        driver.enqueue_many([job(payload=i) for i in range(2)])
        driver.nack_many(receive_exactly(driver, 2), delay_seconds=60)
        assert nothing_due(driver)


class TestHandBack:
    """``release_many`` (the ``HandBack`` group)."""

    def test_release_many_hands_jobs_back_at_once_without_spending_an_attempt(
        self, driver: Any
    ) -> None:
        group(driver, "hand_back")
        driver.enqueue_many([job(payload=i) for i in range(2)])
        held = receive_exactly(driver, 2)
        for _ in range(3):  # three clean shutdowns of a worker holding both
            driver.release_many(held)
            held = receive_exactly(driver, 2, within=2.0)  # due at once, not after a lease
            assert [r.attempt for r in held] == [1, 1]
        driver.nack(held[0])  # a failure is an attempt, as before
        [again] = receive_exactly(driver, 1)
        assert again.attempt == 2

    def test_a_stale_release_leaves_the_new_delivery_alone(
        self, driver_factory: DriverFactory
    ) -> None:
        driver, lease = short_lease(driver_factory)
        group(driver, "hand_back")
        driver.enqueue(job())
        [first] = receive_exactly(driver, 1)
        [second] = receive_exactly(driver, 1, within=lease + PATIENCE)
        assert driver.extend_leases([second], 60) == 1
        driver.release_many([first])
        assert nothing_due(driver)


# -- periodic claims -------------------------------------------------------------------------


class TestPeriodicClaims:
    """``claim_periodic`` across drivers on one store (the ``PeriodicClaims`` group)."""

    def test_one_claim_per_fire_time_across_drivers_and_never_an_older_one(
        self, driver: Any, driver_factory: DriverFactory
    ) -> None:
        group(driver, "periodic_claims")
        other = group(driver_factory(), "periodic_claims")
        at = datetime(2026, 1, 1, 3, tzinfo=UTC)
        assert driver.claim_periodic("cleanup", at)
        assert not other.claim_periodic("cleanup", at)
        assert not driver.claim_periodic("cleanup", at)
        assert other.claim_periodic("report", at)
        assert other.claim_periodic("cleanup", at + timedelta(minutes=5))
        assert not driver.claim_periodic("cleanup", at)

    def test_threads_racing_for_one_fire_time_claim_it_once(
        self, driver: Any, driver_factory: DriverFactory
    ) -> None:
        group(driver, "periodic_claims")
        drivers = [driver, *(driver_factory() for _ in range(3))]
        at = datetime(2026, 1, 1, 4, tzinfo=UTC)
        barrier = threading.Barrier(len(drivers))
        won: list[bool] = []

        def claim(d: Any) -> None:
            barrier.wait()
            won.append(d.claim_periodic("race", at))

        threads = [threading.Thread(target=claim, args=(d,)) for d in drivers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(won) == [False, False, False, True]


# -- counts ------------------------------------------------------------------------------------


def _counts(driver: Any, queue: str) -> tuple[int, int, int, int]:
    stats = driver.stats().get(queue, QueueStats(queue))
    return (stats.ready, stats.delayed, stats.in_flight, stats.dead)


class TestQueueCounts:
    """``stats`` (the ``QueueCounts`` group); estimates are waited on to settle."""

    def test_stats_count_ready_delayed_in_flight_and_dead_per_queue(self, driver: Any) -> None:
        group(driver, "stats")
        consuming(driver)
        driver.enqueue_many([job(), job()])
        driver.enqueue_in(job(), 120)
        driver.enqueue(job(queue="other"))
        receive_exactly(driver, 1, ["default"])
        driver.dead_letter(job(queue="other").encode(), "bad", queue="other")
        eventually(lambda: _counts(driver, "default") == (1, 1, 1, 0), "default's counts")
        eventually(lambda: _counts(driver, "other") == (1, 0, 0, 1), "other's counts")
        stats = driver.stats()
        assert all(isinstance(s, QueueStats) and s.queue == q for q, s in stats.items())

    def test_stats_of_an_empty_store_count_nothing(self, driver: Any) -> None:
        group(driver, "stats")
        assert all(_counts(driver, q) == (0, 0, 0, 0) for q in QUEUES)


class TestPendingCount:
    """``pending_count`` (the ``PendingCount`` group): exact."""

    def test_pending_count_counts_ready_delayed_and_in_flight_per_queue(self, driver: Any) -> None:
        group(driver, "pending_count")
        consuming(driver)
        assert driver.pending_count() == 0
        driver.enqueue_many([job(), job()])
        driver.enqueue_in(job(), 120)
        driver.enqueue(job(queue="other"))
        [held] = receive_exactly(driver, 1, ["default"])
        driver.dead_letter(job().encode(), "bad", queue="default")
        assert driver.pending_count() == 4
        assert driver.pending_count(["default"]) == 3
        assert driver.pending_count(["other"]) == 1
        driver.ack(held)
        assert driver.pending_count(["default"]) == 2


# -- dead letters ------------------------------------------------------------------------------


class TestDeadLetterAdmin:
    """``dead_letters``, ``redrive`` and ``purge_dead_letters`` (the ``DeadLetterAdmin``
    group)."""

    def test_dead_letters_keep_the_body_reason_queue_and_time(self, driver: Any) -> None:
        group(driver, "dead_letter_admin")
        good = job("welcome", {"user_id": "1"}, queue="other")
        before = datetime.now(UTC) - timedelta(seconds=1)
        assert driver.dead_letter(good.encode(), "PermanentJobError: nope", queue="other")
        assert driver.dead_letter("not json", "MalformedMessageError: bad", queue="default")
        by_queue = {d.queue: d for d in driver.dead_letters()}
        kept, malformed = by_queue["other"], by_queue["default"]
        assert (kept.job_name, kept.job_id, kept.body) == ("welcome", good.job_id, good.encode())
        assert kept.reason == "PermanentJobError: nope"
        assert kept.failed_at is not None
        assert kept.failed_at >= before
        assert (malformed.job_name, malformed.body) == (None, "not json")
        assert [d.id for d in driver.dead_letters(queue="other")] == [kept.id]
        assert len(driver.dead_letters(limit=1)) == 1
        assert len(driver.dead_letters()) == 2  # listing leaves them in place

    def test_redrive_puts_dead_letters_back_on_their_queue_as_a_first_attempt(
        self, driver: Any
    ) -> None:
        group(driver, "dead_letter_admin")
        consuming(driver)
        first, second = job(payload=1, queue="other"), job(payload=2)
        driver.dead_letter(first.encode(), "boom", queue="other")
        driver.dead_letter(second.encode(), "boom", queue="default")
        [one] = driver.dead_letters(queue="other")
        assert driver.redrive([one.id]) == 1
        [again] = receive_exactly(driver, 1)
        assert (again.body, again.queue, again.attempt) == (first.encode(), "other", 1)
        assert driver.redrive([]) == 0
        assert driver.redrive(queue="default") == 1
        [back] = receive_exactly(driver, 1)
        assert back.body == second.encode()
        assert driver.dead_letters() == []

    def test_redrive_leaves_a_dead_letter_whose_unique_key_a_pending_job_holds(
        self, driver: Any, contract_options: ContractOptions
    ) -> None:
        group(driver, "dead_letter_admin")
        if not contract_options.unique_keys:
            pytest.skip(f"the {driver_name(driver)} driver keeps no unique keys")
        dead = job("welcome", unique_key="k")
        driver.dead_letter(dead.encode(), "boom", queue="default")
        driver.enqueue(job("welcome", unique_key="k"))
        [record] = driver.dead_letters()
        assert driver.redrive([record.id]) == 0
        assert [d.id for d in driver.dead_letters()] == [record.id]

    def test_purge_deletes_dead_letters_by_id_queue_or_all(self, driver: Any) -> None:
        admin = group(driver, "dead_letter_admin")
        for queue in ("default", "default", "other"):
            driver.dead_letter(job(queue=queue).encode(), "bad", queue=queue)
        one = driver.dead_letters(queue="default")[0]
        assert driver.purge_dead_letters([one.id]) == 1
        assert one.id not in {d.id for d in driver.dead_letters()}
        if caps(admin).purge_by_queue:
            assert driver.purge_dead_letters(queue="other") == 1
            assert [d.queue for d in driver.dead_letters()] == ["default"]
        assert driver.purge_dead_letters() >= 1
        assert driver.dead_letters() == []


class TestDeadLetterSearch:
    """``dead_letter_page``, ``find_dead_letter``, ``redrive_matching`` and
    ``purge_matching`` (the ``DeadLetterSearch`` group)."""

    def _three(self, driver: Any) -> None:
        driver.dead_letter(job("a", queue="default").encode(), "boom", queue="default")
        driver.dead_letter(job("b", queue="other").encode(), "boom", queue="other")
        driver.dead_letter(job("c", queue="other").encode(), "bad input", queue="other")

    def test_a_page_lists_matches_newest_first_with_their_count_and_groups(
        self, driver: Any
    ) -> None:
        group(driver, "dead_letter_search")
        self._three(driver)
        page = driver.dead_letter_page(DeadLetterQuery())
        assert page.total == 3
        assert len(page.records) == 3
        times = [r.failed_at for r in page.records]
        assert all(t is not None for t in times)
        assert times == sorted(times, reverse=True)
        assert {(g.reason, g.count) for g in page.groups} == {("boom", 2), ("bad input", 1)}
        other = driver.dead_letter_page(DeadLetterQuery(queue="other"))
        assert {r.job_name for r in other.records} == {"b", "c"}
        assert other.total == 2
        boom = driver.dead_letter_page(DeadLetterQuery(reason="boom", job_name="a"))
        assert [r.job_name for r in boom.records] == ["a"]

    def test_pages_follow_their_cursor_through_every_match(self, driver: Any) -> None:
        group(driver, "dead_letter_search")
        self._three(driver)
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            page = driver.dead_letter_page(DeadLetterQuery(), cursor, 2)
            assert len(page.records) <= 2
            seen.extend(r.id for r in page.records)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 3

    def test_find_dead_letter_finds_one_by_id_until_it_is_gone(self, driver: Any) -> None:
        group(driver, "dead_letter_search")
        self._three(driver)
        record = driver.dead_letter_page(DeadLetterQuery(reason="bad input")).records[0]
        found = driver.find_dead_letter(record.id)
        assert found is not None
        assert (found.id, found.body, found.reason) == (record.id, record.body, record.reason)
        assert driver.purge_matching(DeadLetterQuery(reason="bad input")) == 1
        assert driver.find_dead_letter(record.id) is None

    def test_redrive_and_purge_matching_act_on_every_match(self, driver: Any) -> None:
        group(driver, "dead_letter_search")
        consuming(driver)
        self._three(driver)
        assert driver.redrive_matching(DeadLetterQuery(reason="boom")) == 2
        assert sorted(r.queue for r in receive_exactly(driver, 2)) == ["default", "other"]
        assert driver.purge_matching(DeadLetterQuery()) == 1
        assert driver.dead_letter_page(DeadLetterQuery()).total == 0


# -- outcome history and job lookup ------------------------------------------------------------


def _minute(offset: int = 0) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=offset)


class TestOutcomeStore:
    """``record_outcomes`` and ``outcome_history`` (the ``OutcomeStore`` group)."""

    def test_recorded_counts_of_one_key_add_up_per_minute_oldest_first(self, driver: Any) -> None:
        group(driver, "outcome_store")
        driver.record_outcomes([OutcomeCount(_minute(-1), "q", "a", "done", 2)])
        driver.record_outcomes(
            [
                OutcomeCount(_minute(-1) + timedelta(seconds=42), "q", "a", "done", 3),
                OutcomeCount(_minute(), "q", "a", "retry", 1),
                OutcomeCount(_minute(), "q", "a", "retry", 4),  # one key twice in one call
            ]
        )
        driver.record_outcomes([])
        assert driver.outcome_history(_minute(-5)) == [
            OutcomeCount(_minute(-1), "q", "a", "done", 5),
            OutcomeCount(_minute(), "q", "a", "retry", 5),
        ]
        assert driver.outcome_history(_minute() + timedelta(seconds=30)) == [
            OutcomeCount(_minute(), "q", "a", "retry", 5)
        ]


class TestJobFinder:
    """``find_job`` (the ``JobFinder`` group): every pending or dead copy of a job, within
    the driver's ``job_lookup_scope``."""

    def test_a_dead_letter_is_found_by_its_job_id(self, driver: Any) -> None:
        group(driver, "job_lookup")
        message = job("a", {"n": 1}, queue="other")
        driver.dead_letter(message.encode(), "boom", queue="other")
        [dead] = [f for f in driver.find_job(message.job_id) if f.state == "dead"]
        assert (dead.job_id, dead.job_name, dead.queue) == (message.job_id, "a", "other")
        assert dead.dead_letter is not None
        assert dead.dead_letter.reason == "boom"
        assert driver.find_job("no-such-job") == []
        assert driver.find_job("x' OR '1'='1") == []

    def test_pending_jobs_are_found_ready_delayed_or_in_flight(self, driver: Any) -> None:
        finder = group(driver, "job_lookup")
        consuming(driver)
        scope = lookup_scope(finder)
        if scope is not None:
            pytest.skip(f"the {driver_name(driver)} driver looks up jobs in {scope} only")
        ready, delayed, running = job("a", queue="default"), job("b"), job("c", queue="other")
        driver.enqueue(ready)
        driver.enqueue_in(delayed, 3600)
        driver.enqueue(running)
        [claimed] = receive_exactly(driver, 1, ["other"])
        driver.dead_letter(ready.encode(), "boom", queue="default")  # a second copy, dead
        found = driver.find_job(ready.job_id)
        assert [(f.state, f.job_name, f.queue) for f in found] == [
            ("ready", "a", "default"),
            ("dead", "a", "default"),
        ]
        assert found[0].body == ready.encode()
        assert found[0].attempts == 0
        assert found[0].enqueued_at is not None
        assert found[0].enqueued_at.tzinfo is not None
        assert found[1].dead_letter is not None
        assert found[1].dead_letter.reason == "boom"
        [later] = driver.find_job(delayed.job_id)
        assert later.state == "delayed"
        assert later.due_at is not None
        assert later.due_at > datetime.now(UTC) + timedelta(minutes=59)
        [held] = driver.find_job(running.job_id)
        assert (held.state, held.attempts) == ("in_flight", claimed.attempt)
        assert held.due_at is not None  # when its lease ends
        assert held.due_at > datetime.now(UTC)


# -- heartbeats, setup, resources --------------------------------------------------------------


class TestHeartbeats:
    """``heartbeat_store`` (the ``Heartbeats`` group)."""

    def test_a_beating_worker_is_listed_until_removed(self, driver: Any) -> None:
        store = group(driver, "heartbeats").heartbeat_store()
        if store is None:
            pytest.skip(f"the {driver_name(driver)} driver's heartbeat_store() is None here")
        started = datetime.now(UTC) - timedelta(minutes=1)
        beat = WorkerBeat("w-1", "host-a", 123, ("default",), 4, 1, started)
        store.record_worker(beat)
        store.record_worker(WorkerBeat("w-2", "host-b", 456, None, 1, 0, datetime.now(UTC)))
        listed = {w.worker_id: w for w in store.workers()}
        assert set(listed) == {"w-1", "w-2"}
        one = listed["w-1"]
        assert (one.host, one.pid, one.concurrency, one.in_flight) == ("host-a", 123, 4, 1)
        assert tuple(one.queues or ()) == ("default",)
        assert [w.worker_id for w in store.workers()] == ["w-2", "w-1"]  # newest start first
        store.remove_worker("w-1")
        assert [w.worker_id for w in store.workers()] == ["w-2"]


class TestSetupCheck:
    """``check`` (the ``SetupCheck`` group)."""

    def test_check_passes_on_the_factorys_driver(self, driver: Any) -> None:
        group(driver, "setup_check")
        driver.check()
        driver.check(list(QUEUES))


class TestClosing:
    """``close`` (the ``Closing`` group)."""

    def test_a_closed_driver_opens_again_when_used(self, driver: Any) -> None:
        group(driver, "closing")
        driver.enqueue(job(payload=1))
        driver.close()
        driver.enqueue(job(payload=2))
        if caps(driver).consuming is not None:
            assert sorted(payloads(receive_exactly(driver, 2))) == [1, 2]
        driver.close()
        driver.close()  # twice is fine


class TestConfiguredQueues:
    """``queue_name`` (the ``ConfiguredQueues`` group)."""

    def test_a_configured_queue_is_named_and_an_unknown_one_refused(self, driver: Any) -> None:
        group(driver, "configured_queues")
        assert all(isinstance(driver.queue_name(q), str) for q in QUEUES)
        with pytest.raises(ConfigurationError):
            driver.queue_name("no-such-queue-of-the-contract-suite")


class TestDelayLimit:
    """``accepts_delay`` (the ``DelayLimit`` group)."""

    def test_a_queue_that_refuses_a_delay_refuses_every_longer_one(self, driver: Any) -> None:
        group(driver, "delay_limit")
        delays = [0, 1, 60, 900, 901, 86400, 30 * 86400]
        for queue in QUEUES:
            accepted = [bool(driver.accepts_delay(queue, d)) for d in delays]
            assert accepted[0], "a queue holds a message without delay"
            assert accepted == sorted(accepted, reverse=True)


class TestNativeAsync:
    """``async_enqueuer`` (the ``NativeAsync`` group)."""

    def test_the_async_enqueuer_sends_what_the_driver_delivers(self, driver: Any) -> None:
        enqueuer = group(driver, "native_async").async_enqueuer()
        if enqueuer is None:
            pytest.skip(f"the {driver_name(driver)} driver's async_enqueuer() is None here")
        message = job(payload="async")

        async def send() -> list[EnqueueResult]:
            try:
                now = await enqueuer.enqueue(message)
                later = await enqueuer.enqueue_in(job(), 120)
                return [now, later]
            finally:
                await enqueuer.aclose()

        now, later = asyncio.run(send())
        assert now.job_id == message.job_id
        assert later.scheduled_at is not None
        if caps(driver).consuming is not None:
            [got] = receive_exactly(driver, 1)
            assert got.body == message.encode()


# -- StatusStore -------------------------------------------------------------------------------


def status_store(driver: object) -> Any:
    """``driver`` as its ``StatusStore`` (with ``Consuming``, which every test here needs)."""
    consuming(driver)
    return group(driver, "status")


def job_id_of(received: ReceivedMessage) -> str:
    return JobMessage.from_json(received.body).job_id


def status_of(driver: Any, job_id: str) -> JobStatus:
    """The status of ``job_id``, which the driver must know."""
    found = driver.job_status(job_id)
    assert isinstance(found, JobStatus), f"no status for job {job_id}"
    return found


def started(driver: Any, count: int, queues: Sequence[str] | None = None) -> list[ReceivedMessage]:
    """``count`` deliveries, each started as a worker starts it (``record_start``)."""
    got = receive_exactly(driver, count, queues)
    assert all(driver.record_start(r) for r in got), "record_start refused a waiting job"
    return got


def runs_until(driver: Any, marker: str, due: float = 0.0) -> list[str]:
    """What a worker would run now: the job ids of the deliveries ``record_start`` admits,
    received until job ``marker`` came and (a monotonic) ``due`` passed, and a receive
    then finds nothing. Each delivery is acknowledged (a refused one as a worker does)."""
    admitted: list[str] = []
    seen = False
    deadline = time.monotonic() + PATIENCE + max(0.0, due - time.monotonic())
    while True:
        got = driver.receive(None, 10, 0.5)
        for r in got:
            job_id = job_id_of(r)
            if driver.record_start(r):
                admitted.append(job_id)
            driver.ack(r)
            seen = seen or job_id == marker
        if seen and not got and time.monotonic() >= due:
            return admitted
        if time.monotonic() > deadline:
            pytest.fail(f"job {marker} was not delivered within {PATIENCE} s")
        if not got:
            time.sleep(0.05)


class TestStatusStore:
    """``job_status``, ``job_history``, ``record_start``, ``record_retry``,
    ``record_progress``, ``finish`` and ``finish_many`` (the ``StatusStore`` group): a
    job's life, its end written by ``finish`` only."""

    def test_a_job_is_pending_or_scheduled_then_running_once_started(self, driver: Any) -> None:
        status_store(driver)
        later = job("later")
        driver.enqueue_in(later, 3600)
        assert status_of(driver, later.job_id).state == "scheduled"
        message = job("work", {"n": 1}, queue="other")
        driver.enqueue(message)
        waiting = status_of(driver, message.job_id)
        assert (waiting.state, waiting.attempts, waiting.job_name, waiting.queue) == (
            "pending",
            0,
            "work",
            "other",
        )
        assert waiting.enqueued_at is not None
        assert waiting.enqueued_at.tzinfo is not None
        assert not waiting.finished
        started(driver, 1, ["other"])
        running = status_of(driver, message.job_id)
        assert (running.state, running.attempts) == ("running", 1)
        driver.record_progress(message.job_id, 0.5, "half")
        halfway = status_of(driver, message.job_id)
        assert (halfway.progress, halfway.progress_note) == (0.5, "half")
        assert driver.job_status("no-such-job-of-the-contract-suite") is None

    def test_finish_done_keeps_the_result_and_the_job_is_not_delivered_again(
        self, driver: Any
    ) -> None:
        status_store(driver)
        message = job()
        driver.enqueue(message)
        [received] = started(driver, 1)
        driver.finish(received, FinalStatus("done", result={"total": 3}, progress=1.0))
        done = status_of(driver, message.job_id)
        assert (done.state, done.result, done.attempts, done.progress) == (
            "done",
            {"total": 3},
            1,
            1.0,
        )
        assert done.finished
        assert nothing_due(driver)
        assert status_of(driver, message.job_id).state == "done"  # kept

    def test_finish_with_keep_for_zero_keeps_no_status(self, driver: Any) -> None:
        status_store(driver)
        message = job("forgotten")
        driver.enqueue(message)
        driver.finish_many([(started(driver, 1)[0], FinalStatus("done", result=1, keep_for=0))])
        assert driver.job_status(message.job_id) is None
        assert driver.job_history(job_name="forgotten") == []
        assert nothing_due(driver)

    def test_a_retried_job_is_retrying_with_its_error_and_never_done(self, driver: Any) -> None:
        status_store(driver)
        message = job()
        driver.enqueue(message)
        [received] = started(driver, 1)
        driver.record_retry(received, "ValueError: boom", "Traceback: boom\n")
        driver.nack(received, 3600)
        retrying = status_of(driver, message.job_id)
        assert (retrying.state, retrying.attempts, retrying.error) == (
            "retrying",
            1,
            "ValueError: boom",
        )
        assert retrying.traceback == "Traceback: boom\n"

    def test_a_dead_lettered_job_finished_dead_is_dead(self, driver: Any) -> None:
        status_store(driver)
        message = job()
        driver.enqueue(message)
        [received] = started(driver, 1)
        # What a worker does: the dead letter, its ack, then the end recorded (only).
        driver.dead_letter(received.body, "PermanentJobError: no", queue=received.queue)
        driver.ack(received)
        driver.finish(received, FinalStatus("dead", error="PermanentJobError: no", traceback="tb"))
        dead = status_of(driver, message.job_id)
        assert (dead.state, dead.error, dead.attempts) == ("dead", "PermanentJobError: no", 1)
        assert nothing_due(driver)

    def test_a_job_finished_failed_is_failed(self, driver: Any) -> None:
        status_store(driver)
        message = job()
        driver.enqueue(message)
        driver.finish(started(driver, 1)[0], FinalStatus("failed", error="ValueError: no"))
        failed = status_of(driver, message.job_id)
        assert (failed.state, failed.error, failed.finished) == ("failed", "ValueError: no", True)
        assert nothing_due(driver)

    def test_a_job_whose_lease_ran_out_is_running_again_never_done(
        self, driver_factory: DriverFactory
    ) -> None:
        driver, lease = short_lease(driver_factory)
        status_store(driver)
        message = job()
        driver.enqueue(message)
        started(driver, 1)  # its worker dies here, never finishing it
        [again] = receive_exactly(driver, 1, within=lease + PATIENCE)
        assert driver.record_start(again)
        status = status_of(driver, message.job_id)
        assert (status.state, status.attempts) == ("running", 2)

    def test_a_stale_delivery_finished_done_does_not_end_the_running_job(
        self, driver_factory: DriverFactory
    ) -> None:
        driver, lease = short_lease(driver_factory)
        status_store(driver)
        message = job()
        driver.enqueue(message)
        [first] = started(driver, 1)
        [second] = receive_exactly(driver, 1, within=lease + PATIENCE)
        assert driver.extend_leases([second], 60) == 1
        assert driver.record_start(second)
        driver.finish(first, FinalStatus("done", result="stale"))
        assert status_of(driver, message.job_id).state == "running"
        driver.finish(second, FinalStatus("done", result="fresh"))
        assert status_of(driver, message.job_id).result == "fresh"

    def test_history_is_newest_first_filtered_and_paged(self, driver: Any) -> None:
        status_store(driver)
        done = [job("a", n) for n in range(3)]
        for message in done:
            driver.enqueue(message)
            driver.finish(started(driver, 1)[0], FinalStatus("done", result=message.payload))
            time.sleep(0.01)  # distinct update times, for the order checked
        waiting = job("b", queue="other")
        driver.enqueue(waiting)
        newest = [waiting.job_id, *(m.job_id for m in reversed(done))]
        assert [s.job_id for s in driver.job_history()] == newest
        first = driver.job_history(state="done", limit=2)
        assert [s.job_id for s in first] == newest[1:3]
        after = driver.job_history(state="done", limit=2, before=first[-1].job_id)
        assert [s.job_id for s in after] == newest[3:]
        assert [s.job_id for s in driver.job_history(job_name="b")] == [waiting.job_id]
        assert [s.job_id for s in driver.job_history(queue="other")] == [waiting.job_id]
        assert [s.job_id for s in driver.job_history(state="pending")] == [waiting.job_id]
        assert driver.job_history(state="running") == []


class TestCancellation:
    """``cancel`` and ``cancel_requested`` (the ``StatusStore`` group): a cancelled job
    never runs, also on another driver of the store (after a restart)."""

    def test_a_cancelled_waiting_job_never_runs_even_after_a_restart(
        self, driver: Any, driver_factory: DriverFactory
    ) -> None:
        status_store(driver)
        pending, scheduled, other = job(), job(), job()
        driver.enqueue(pending)
        driver.enqueue_in(scheduled, 1)
        driver.enqueue(other)
        due = time.monotonic() + 1.5
        assert driver.cancel(pending.job_id) is True
        assert driver.cancel(scheduled.job_id, "not needed") is True
        assert status_of(driver, pending.job_id).state == "cancelled"
        assert status_of(driver, scheduled.job_id).error == "not needed"
        restarted: Any = driver_factory()
        assert runs_until(restarted, other.job_id, due) == [other.job_id]
        assert status_of(restarted, pending.job_id).state == "cancelled"
        assert status_of(restarted, scheduled.job_id).state == "cancelled"
        assert restarted.cancel(pending.job_id) is False  # it has ended

    def test_a_cancelled_retrying_job_never_runs_again(self, driver: Any) -> None:
        status_store(driver)
        message, other = job(), job()
        driver.enqueue(message)
        [received] = started(driver, 1)
        driver.record_retry(received, "boom", None)
        driver.nack(received)
        driver.enqueue(other)
        assert driver.cancel(message.job_id) is True
        assert runs_until(driver, other.job_id) == [other.job_id]
        cancelled = status_of(driver, message.job_id)
        assert (cancelled.state, cancelled.attempts) == ("cancelled", 1)

    def test_a_running_job_is_asked_to_stop_and_ends_as_its_worker_says(self, driver: Any) -> None:
        status_store(driver)
        message, other = job(), job()
        driver.enqueue_many([message, other])
        held = started(driver, 2)
        ids = [message.job_id, other.job_id]
        assert driver.cancel_requested(ids) == set()
        assert driver.cancel(message.job_id) is True
        assert driver.cancel_requested([*ids, "no-such-job"]) == {message.job_id}
        assert status_of(driver, message.job_id).state == "running"
        mine = next(r for r in held if job_id_of(r) == message.job_id)
        driver.finish(mine, FinalStatus("cancelled", error="cancelled"))
        assert status_of(driver, message.job_id).state == "cancelled"
        assert nothing_due(driver)

    def test_cancel_is_false_for_an_unknown_or_ended_job(self, driver: Any) -> None:
        status_store(driver)
        assert driver.cancel("no-such-job-of-the-contract-suite") is False
        message = job()
        driver.enqueue(message)
        driver.finish(started(driver, 1)[0], FinalStatus("done"))
        assert driver.cancel(message.job_id) is False
        assert status_of(driver, message.job_id).state == "done"


class TestStatusBatches:
    """``record_start_many`` and ``record_ends`` (the ``StatusBatches`` group)."""

    def test_record_start_many_admits_each_waiting_job_in_order(self, driver: Any) -> None:
        batches = group(driver, "status_batches")
        status_store(driver)
        messages = [job(payload=n) for n in range(3)]
        driver.enqueue_many(messages)
        received = receive_exactly(driver, 3)
        assert batches.record_start_many(received) == [True, True, True]
        assert batches.record_start_many([]) == []
        assert {status_of(driver, m.job_id).state for m in messages} == {"running"}

    def test_record_start_many_refuses_a_cancelled_job(self, driver: Any) -> None:
        batches = group(driver, "status_batches")
        status_store(driver)
        messages = [job(payload=n) for n in range(3)]
        driver.enqueue_many(messages)
        assert driver.cancel(messages[1].job_id)
        received: list[ReceivedMessage] = []
        deadline = time.monotonic() + PATIENCE
        while {messages[0].job_id, messages[2].job_id} - {job_id_of(r) for r in received}:
            assert time.monotonic() < deadline, "the jobs not cancelled were not delivered"
            received += driver.receive(None, 10, 0.5)
        received += driver.receive(None, 10, 0.5)  # the cancelled one, if it comes at all
        admitted = batches.record_start_many(received)
        assert dict(zip(map(job_id_of, received), admitted, strict=True)) == {
            job_id_of(r): job_id_of(r) != messages[1].job_id for r in received
        }

    def test_record_ends_records_how_jobs_ended(self, driver: Any) -> None:
        batches = group(driver, "status_batches")
        status_store(driver)
        messages = [job(payload=n) for n in range(3)]
        driver.enqueue_many(messages)
        received = {job_id_of(r): r for r in receive_exactly(driver, 3)}
        assert all(batches.record_start_many(list(received.values())))
        ends = [
            FinalStatus("done", result=[1, 2]),
            FinalStatus("failed", error="ValueError: no"),
            FinalStatus("done", result=0, keep_for=0),
        ]
        assert batches.record_ends(
            [(received[m.job_id], e) for m, e in zip(messages, ends, strict=True)]
        )
        done, failed = status_of(driver, messages[0].job_id), status_of(driver, messages[1].job_id)
        assert (done.state, done.result, done.attempts) == ("done", [1, 2], 1)
        assert (failed.state, failed.error) == ("failed", "ValueError: no")
        assert driver.job_status(messages[2].job_id) is None
        for r in received.values():  # the caller settles them (a no-op where it was)
            driver.ack(r)
        assert nothing_due(driver)


# -- priorities --------------------------------------------------------------------------------


class TestPriorities:
    """Higher ``JobMessage.priority`` received first within a queue, equal ones in the order
    enqueued (``capabilities_of(driver).priorities``)."""

    @pytest.fixture(autouse=True)
    def _claims_by_priority(self, driver: Any) -> None:
        consuming(driver)
        if not caps(driver).priorities:
            pytest.skip(f"the {driver_name(driver)} driver has no priorities (claims_by_priority)")

    def test_higher_priorities_come_first_and_equal_ones_in_order(self, driver: Any) -> None:
        levels = [0, 5, -1, 5, 10, 0, -3]
        messages = [job(payload=n, priority=p) for n, p in enumerate(levels)]
        for message in messages:
            driver.enqueue(message)
        received = [job_id_of(receive_exactly(driver, 1)[0]) for _ in messages]
        ranked = sorted(range(len(levels)), key=lambda n: (-levels[n], n))
        assert received == [messages[n].job_id for n in ranked]

    def test_a_batch_is_received_by_priority(self, driver: Any) -> None:
        levels = [1, 0, 7, 1, -2]
        messages = [job(payload=n, priority=p) for n, p in enumerate(levels)]
        driver.enqueue_many(messages)
        received = [job_id_of(r) for r in receive_exactly(driver, len(messages))]
        assert received == [messages[n].job_id for n in (2, 0, 3, 1, 4)]
        if caps(driver).status is not None:
            assert [status_of(driver, m.job_id).priority for m in messages] == levels

    def test_a_delayed_high_priority_job_waits_for_its_time(self, driver: Any) -> None:
        urgent, plain = job(priority=9), job()
        driver.enqueue_in(urgent, 3600)
        driver.enqueue(plain)
        assert [job_id_of(r) for r in receive_exactly(driver, 1)] == [plain.job_id]
        assert nothing_due(driver)


# -- debounce ----------------------------------------------------------------------------------


def debounced(
    payload: object, key: str = "k", window: float = 1.0, name: str = "digest"
) -> JobMessage:
    """A message of a debounced enqueue (its unique key and window set)."""
    return job(name, payload, unique_key=key, debounce=window)


def worker_runs(driver: Any, marker: str | None, due: float = 0.0) -> list[tuple[str, Any, float]]:
    """What a worker would run, as ``(job id, payload, time.monotonic())`` in delivery order:
    the deliveries received (and ``record_start`` admits, on a driver with a status store)
    until job ``marker`` came (None: any job ran) and (a monotonic) ``due`` passed, and a
    receive then finds nothing. Each delivery is acknowledged."""
    store = caps(driver).status
    ran: list[tuple[str, Any, float]] = []
    seen = False
    deadline = time.monotonic() + PATIENCE + max(0.0, due - time.monotonic())
    while True:
        got = driver.receive(None, 10, 0.5)
        for r in got:
            message = JobMessage.from_json(r.body)
            if store is None or store.record_start(r):
                ran.append((message.job_id, message.payload, time.monotonic()))
                seen = seen or marker is None
            driver.ack(r)
            seen = seen or message.job_id == marker
        if seen and not got and time.monotonic() >= due:
            return ran
        if time.monotonic() > deadline:
            pytest.fail(f"job {marker or '(any)'} was not delivered within {PATIENCE} s")
        if not got:
            time.sleep(0.05)


def superseded_by(driver: Any, job_id: str) -> str | None:
    """The job that superseded ``job_id``, as its status says (None: a driver without a
    status store)."""
    if caps(driver).status is None:
        return None
    from ..debounce import superseding_job

    found = status_of(driver, job_id)
    assert found.state == "cancelled", f"job {job_id} is {found.state}, not superseded"
    return superseding_job(found)


class TestDebounce:
    """``enqueue_debounced`` (the ``Debounce`` group): the last payload of a burst runs once,
    a window after the last enqueue; a superseded job never runs and ends cancelled."""

    @pytest.fixture(autouse=True)
    def _debounces(self, driver: Any) -> None:
        consuming(driver)
        group(driver, "debounce")

    def test_a_debounced_enqueue_supersedes_the_waiting_job_and_moves_the_run(
        self, driver: Any
    ) -> None:
        first, second = debounced(1), debounced(2)
        early = driver.enqueue_debounced(first, 1.0)
        time.sleep(0.3)
        enqueued = time.monotonic()
        late = driver.enqueue_debounced(second, 1.0)
        assert (early.job_id, late.job_id) == (first.job_id, second.job_id)
        assert early.scheduled_at is not None
        assert late.scheduled_at is not None
        assert late.scheduled_at - early.scheduled_at >= timedelta(seconds=0.25)
        assert nothing_due(driver)
        if caps(driver).status is not None:
            assert superseded_by(driver, first.job_id) == second.job_id
            assert status_of(driver, second.job_id).state == "scheduled"
        ran = worker_runs(driver, second.job_id, enqueued + 1.0)
        assert [(job_id, payload) for job_id, payload, _ in ran] == [(second.job_id, 2)]
        assert ran[0][2] >= enqueued + 0.95, "it ran before the end of its window"

    def test_a_burst_runs_once_with_its_last_payload(self, driver: Any) -> None:
        burst = [debounced(n, window=1.0) for n in range(6)]
        for message in burst:
            driver.enqueue_debounced(message, 1.0)
        driver.enqueue_debounced(debounced("other key", key="k2"), 1.0)
        last = burst[-1]
        ran = worker_runs(driver, last.job_id, time.monotonic() + 1.0)
        assert sorted(str(payload) for _, payload, _ in ran) == ["5", "other key"]
        if caps(driver).status is not None:
            for earlier, later in zip(burst, burst[1:], strict=False):  # noqa: RUF007
                assert superseded_by(driver, earlier.job_id) == later.job_id

    def test_racing_debounced_enqueues_of_one_key_leave_exactly_one_job(self, driver: Any) -> None:
        racers = [debounced(n, window=0.5) for n in range(8)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(racers))

        def enqueue(message: JobMessage) -> None:
            barrier.wait()
            try:
                driver.enqueue_debounced(message, 0.5)
            except BaseException as exc:  # pragma: no cover - the failure shows below
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, args=(m,)) for m in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        ids = {m.job_id for m in racers}
        # Every job left would be due half a second after the last enqueue.
        ran = worker_runs(driver, None, time.monotonic() + 0.6)
        assert len(ran) == 1, f"{len(ran)} jobs ran: {ran}"
        [(winner, _, _)] = ran
        assert winner in ids
        if caps(driver).status is not None:
            losers = ids - {winner}
            assert {j for j in losers if status_of(driver, j).state == "cancelled"} == losers

    def test_a_key_held_without_debounce_is_refused_either_way(self, driver: Any) -> None:
        plain = job("digest", "plain", unique_key="k")
        driver.enqueue(plain)
        with pytest.raises(DuplicateJobError) as refused:
            driver.enqueue_debounced(debounced("debounced"), 1.0)
        assert refused.value.existing_job_id == plain.job_id
        waiting = debounced("waiting", key="k2")
        driver.enqueue_debounced(waiting, 0.0)
        with pytest.raises(DuplicateJobError):
            driver.enqueue(job("digest", "plain", unique_key="k2"))
        ran = worker_runs(driver, waiting.job_id)
        assert sorted(payload for _, payload, _ in ran) == ["plain", "waiting"]

    def test_an_enqueue_while_the_job_runs_runs_again_after_the_window(self, driver: Any) -> None:
        running = debounced("running", window=0.0)
        driver.enqueue_debounced(running, 0.0)
        [held] = receive_exactly(driver, 1)
        if caps(driver).status is not None:
            assert driver.record_start(held)
        enqueued = time.monotonic()
        latest = debounced("latest", window=1.0)
        driver.enqueue_debounced(latest, 1.0)
        driver.ack(held)  # its worker finished it
        ran = worker_runs(driver, latest.job_id, enqueued + 1.0)
        assert [(job_id, payload) for job_id, payload, _ in ran] == [(latest.job_id, "latest")]
        assert ran[0][2] >= enqueued + 0.95


# -- fairness ------------------------------------------------------------------------------------


def tenant(received: ReceivedMessage) -> str | None:
    """The fairness key of a delivery (None: none)."""
    return JobMessage.from_json(received.body).fairness_key


class TestFairness:
    """A queue's jobs claimed round-robin across their ``JobMessage.fairness_key`` (jobs
    without one a group of their own), each key's own jobs highest priority first, then
    in the order due (``capabilities_of(driver).fairness == "round-robin"``)."""

    @pytest.fixture(autouse=True)
    def _claims_round_robin(self, driver: Any) -> None:
        consuming(driver)
        if caps(driver).fairness != "round-robin":
            pytest.skip(
                f"the {driver_name(driver)} driver does not claim round-robin across fairness "
                f"keys (fairness: {caps(driver).fairness})"
            )

    def test_keys_take_turns_however_long_the_first_backlog(self, driver: Any) -> None:
        backlog = [job(payload=n, fairness_key="a") for n in range(30)]
        driver.enqueue_many(backlog)
        few = [job(payload=n, fairness_key="b") for n in range(3)]
        driver.enqueue_many(few)
        plain = [job(payload=n) for n in range(3)]
        driver.enqueue_many(plain)
        received = [receive_exactly(driver, 1)[0] for _ in range(12)]
        for r in received:
            driver.ack(r)
        rounds = [{tenant(r) for r in received[n : n + 3]} for n in range(0, 9, 3)]
        assert rounds == [{"a", "b", None}] * 3
        ids = [job_id_of(r) for r in received]
        for messages in (backlog, few, plain):  # each group in the order enqueued
            mine = [i for i in ids if i in {m.job_id for m in messages}]
            assert mine == [m.job_id for m in messages][: len(mine)]
        assert ids[9:] == [m.job_id for m in backlog[3:6]]

    def test_a_batch_takes_from_every_key_in_turn(self, driver: Any) -> None:
        driver.enqueue_many([job(payload=n, fairness_key="a") for n in range(20)])
        driver.enqueue_many([job(payload=n, fairness_key=k) for n in range(2) for k in "bc"])
        batch = receive_exactly(driver, 6)
        assert sorted(str(tenant(r)) for r in batch) == ["a", "a", "b", "b", "c", "c"]
        assert {tenant(r) for r in batch[:3]} == {"a", "b", "c"}

    def test_priorities_order_each_keys_own_jobs(self, driver: Any) -> None:
        first, urgent, last = (job(fairness_key="a", priority=p) for p in (0, 5, 0))
        other = job(fairness_key="b", priority=-1)
        for message in (first, urgent, last, other):
            driver.enqueue(message)
        received = [job_id_of(receive_exactly(driver, 1)[0]) for _ in range(4)]
        mine = [i for i in received if i != other.job_id]
        assert mine == [urgent.job_id, first.job_id, last.job_id]
        assert received.index(other.job_id) <= 1  # its turn comes in the first round

    def test_a_key_with_nothing_due_takes_no_turn(self, driver: Any) -> None:
        driver.enqueue_in(job(fairness_key="later"), 3600)
        due = [job(payload=n, fairness_key="now") for n in range(2)]
        driver.enqueue_many(due)
        received = receive_exactly(driver, 2)
        assert [job_id_of(r) for r in received] == [m.job_id for m in due]
        assert nothing_due(driver)

    def test_two_claimers_at_once_never_take_one_job_twice(
        self, driver_factory: DriverFactory
    ) -> None:
        first, second = driver_factory(), driver_factory()
        messages = [job(payload=n, fairness_key=f"t{n % 7}") for n in range(140)]
        messages += [job(payload=n) for n in range(20)]
        first.enqueue_many(messages)
        taken: list[list[str]] = [[], []]
        start = threading.Barrier(2)

        def drain(driver: Any, into: list[str]) -> None:
            start.wait()
            while batch := driver.receive(None, 3, 0.0):
                into.extend(job_id_of(r) for r in batch)
                for r in batch:
                    driver.ack(r)

        threads = [
            threading.Thread(target=drain, args=(d, into))
            for d, into in zip((first, second), taken, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PATIENCE * 4)
        everything = taken[0] + taken[1]
        assert len(everything) == len(set(everything)) == len(messages)


# -- flow limits -------------------------------------------------------------------------------


def key_of(received: ReceivedMessage) -> str | None:
    return JobMessage.from_json(received.body).concurrency_key


def name_of(received: ReceivedMessage) -> str:
    return JobMessage.from_json(received.body).job_name


class TestFlowLimits:
    """``acquire`` and ``throttle_counts`` (the ``FlowLimits`` group): a delivery of a
    limited job starts only while its rate and its slot allow; one held back is put back
    for later without spending an attempt, and counted."""

    def test_acquire_lets_the_rate_through_then_puts_back_without_spending_an_attempt(
        self, driver: Any
    ) -> None:
        flow = group(driver, "flow_limits")
        driver.enqueue_many([job("contract-paced", n) for n in range(3)])
        received = receive_exactly(driver, 3)
        limits = JobLimits(RateLimit(2, 3600.0), None)
        waits = [flow.acquire(r, "contract-paced", None, limits) for r in received]
        assert waits[:2] == [None, None]
        assert waits[2] is not None
        assert 0 < waits[2] <= 3600
        assert nothing_due(driver)  # held back for its window, not delivered again now
        assert flow.throttle_counts() == {"contract-paced": 1}

    def test_a_slot_is_held_per_key_until_its_delivery_is_settled(self, driver: Any) -> None:
        flow = group(driver, "flow_limits")
        keyed = [job("contract-slots", n, concurrency_key="a") for n in range(2)]
        driver.enqueue_many([*keyed, job("contract-slots", 9, concurrency_key="b")])
        received = receive_exactly(driver, 3)
        first, second = (r for r in received if key_of(r) == "a")
        [other] = (r for r in received if key_of(r) == "b")
        limits = JobLimits(None, 1)
        assert flow.acquire(first, "contract-slots", "a", limits) is None
        assert flow.acquire(other, "contract-slots", "b", limits) is None
        wait = flow.acquire(second, "contract-slots", "a", limits)
        assert wait is not None
        assert 0 < wait <= 5
        driver.ack(first)
        [again] = receive_exactly(driver, 1)
        assert again.attempt == 1  # held back is not an attempt
        assert flow.acquire(again, "contract-slots", "a", limits) is None
        assert flow.throttle_counts() == {"contract-slots": 1}

    def test_throttle_counts_name_only_jobs_held_back(self, driver: Any) -> None:
        flow = group(driver, "flow_limits")
        assert flow.throttle_counts() == {}
        driver.enqueue(job("contract-paced"))
        [received] = receive_exactly(driver, 1)
        assert (
            flow.acquire(received, "contract-paced", None, JobLimits(RateLimit(1, 60), 1)) is None
        )
        assert flow.throttle_counts() == {}


class TestClaimLimits:
    """``limited_claims(limits).claim(queues, max_messages, wait_seconds, max_limited)``
    (the ``ClaimLimits`` group): the claim admits the deliveries of limited jobs that may
    start, at most ``max_limited`` of them, first; it puts back those that may not, unspent
    and counted; it claims jobs without limits as ``receive`` does."""

    def test_a_limited_claim_admits_the_rate_and_puts_the_rest_back_counted(
        self, driver: Any
    ) -> None:
        claims = group(driver, "claim_limits").limited_claims(
            {"contract-paced": JobLimits(RateLimit(2, 3600.0), None)}
        )
        driver.enqueue_many([job("contract-paced", n) for n in range(3)])
        driver.enqueue_many([job("contract-free", n) for n in range(2)])
        batch = claims.claim(None, 10, 0.0, 10)
        assert batch.limited == 2
        assert [name_of(r) for r in batch.received] == ["contract-paced"] * 2 + [
            "contract-free"
        ] * 2
        assert {r.attempt for r in batch.received} == {1}
        assert batch.throttled == {("contract-paced", "default"): 1}
        assert claims.claim(None, 10, 0.0, 10).received == []  # it waits its window out
        flow = caps(driver).flow_limits
        if flow is not None:
            assert flow.throttle_counts() == {"contract-paced": 1}

    def test_a_limited_claim_takes_no_more_limited_deliveries_than_asked(self, driver: Any) -> None:
        claims = group(driver, "claim_limits").limited_claims(
            {"contract-slots": JobLimits(None, 100)}
        )
        driver.enqueue_many([job("contract-slots", n) for n in range(4)])
        driver.enqueue_many([job("contract-free", n) for n in range(2)])
        batch = claims.claim(None, 10, 0.0, 1)
        assert batch.limited == 1
        assert batch.left == 3
        assert batch.throttled == {}
        assert sorted(name_of(r) for r in batch.received) == [
            "contract-free",
            "contract-free",
            "contract-slots",
        ]
        rest = claims.claim(None, 10, 0.0, 10)  # the others were left due, unspent
        assert rest.limited == 3
        assert {r.attempt for r in rest.received} == {1}

    def test_slots_taken_in_the_claim_are_held_per_key_until_settled(self, driver: Any) -> None:
        claims = group(driver, "claim_limits").limited_claims(
            {"contract-slots": JobLimits(None, 1)}
        )
        keyed = [job("contract-slots", n, concurrency_key="a") for n in range(2)]
        driver.enqueue_many([*keyed, job("contract-slots", 9, concurrency_key="b")])
        batch = claims.claim(None, 10, 0.0, 10)
        assert sorted(key_of(r) or "" for r in batch.received) == ["a", "b"]
        assert batch.limited == 2
        assert batch.throttled == {("contract-slots", "default"): 1}
        [first] = (r for r in batch.received if key_of(r) == "a")
        assert claims.claim(None, 10, 0.0, 10).received == []
        driver.ack(first)
        deadline = time.monotonic() + PATIENCE
        while not (again := claims.claim(None, 10, 0.5, 10)).received:
            assert time.monotonic() < deadline, "the key's second job never started"
        assert [(key_of(r), r.attempt) for r in again.received] == [("a", 1)]

    def test_a_slot_taken_in_the_claim_is_free_once_its_lease_runs_out(
        self, driver_factory: DriverFactory
    ) -> None:
        made, lease = short_lease(driver_factory)
        claims = group(made, "claim_limits").limited_claims({"contract-slots": JobLimits(None, 1)})
        made.enqueue(job("contract-slots", 1, concurrency_key="a"))
        assert claims.claim(None, 10, 0.0, 10).limited == 1  # its worker dies holding it
        made.enqueue(job("contract-slots", 2, concurrency_key="a"))
        assert claims.claim(None, 10, 0.0, 10).received == []  # held back: the slot is taken
        started = time.monotonic()
        while not claims.claim(None, 10, 0.2, 10).received:
            assert time.monotonic() - started < lease + PATIENCE, "the slot was never freed"
        assert time.monotonic() - started < lease + 2.0


# The Workflows group's tests live in a module of their own; collected with the rest.
from .workflow_contract import TestWorkflows  # noqa: E402
