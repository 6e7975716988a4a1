"""The driver contract (glasswork.jobs.drivers.contract): what each of our drivers can do, by
declaration; third-party drivers recognised by the methods they write; a driver with only the
core methods working with the worker, the CLI and the dashboard, which say what it cannot do;
and the old module paths of the contract still importing."""

from __future__ import annotations

import importlib
import itertools
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from glasswork import define_module
from glasswork.cli import main
from glasswork.jobs import JobMessage, JobService, MockQueueDriver, define_job
from glasswork.jobs.drivers import contract
from glasswork.jobs.drivers.contract import (
    Capabilities,
    Consuming,
    LeaseExtension,
    QueueCounts,
    QueueDriver,
    capabilities_of,
    missing_methods,
)
from glasswork.jobs.drivers.records import EnqueueResult, QueueStats, ReceivedMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.errors import ConfigurationError
from glasswork.jobs.worker import Worker
from pgtest import POSTGRESQL, dsn, fresh_schema

# -- what each of our drivers can do ---------------------------------------------------------

SQLITE_GROUPS = (
    "producing",
    "consuming",
    "batch_ack",
    "batch_nack",
    "hand_back",
    "lease_extension",
    "periodic_claims",
    "stats",
    "pending_count",
    "dead_letter_admin",
    "dead_letter_search",
    "outcome_history",
    "outcome_store",
    "job_lookup",
    "heartbeats",
    "idempotency",
    "closing",
    "status",
    "flow_limits",
    "debounce",
    "claim_limits",
    "workflows",
)
EXPECTED = {
    "mock": (
        "producing",
        "consuming",
        "idempotency",
        "status",
        "status_batches",
        "flow_limits",
        "debounce",
        "workflows",
    ),
    "sqlite": SQLITE_GROUPS,
    "postgresql": (
        *(
            g
            for g in SQLITE_GROUPS
            if g
            not in (
                "idempotency",
                "closing",
                "status",
                "flow_limits",
                "debounce",
                "claim_limits",
                "workflows",
            )
        ),
        "transactions",
        "closing",
        "status",
        "flow_limits",
        "debounce",
        "claim_limits",
        "workflows",
    ),
    "sqs": (
        "producing",
        "consuming",
        "batch_ack",
        "lease_extension",
        "stats",
        "configured_queues",
        "delay_limit",
        "dead_letter_admin",
        "dead_letter_search",
        "job_lookup",
        "run_steps",
        "native_async",
        "setup_check",
        "status",
    ),
}


@pytest.fixture(params=["mock", "sqlite", POSTGRESQL, "sqs"])
def each_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueDriver]:
    if request.param == "mock":
        yield MockQueueDriver()
    elif request.param == "sqlite":
        driver = SQLiteQueueDriver(tmp_path / "jobs.db")
        yield driver
        driver.close()
    elif request.param == "postgresql":
        from glasswork.jobs.drivers.postgres import PostgresQueueDriver

        with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as driver:
            yield driver
    else:
        from glasswork.jobs.drivers.sqs import SQSQueueDriver

        # Nothing here talks to AWS: asking what a driver can do reads its class.
        yield SQSQueueDriver(
            region="us-east-1", queues={"default": "https://sqs.us-east-1.amazonaws.com/1/jobs"}
        )


def test_each_driver_has_exactly_the_groups_it_declares(each_driver: QueueDriver) -> None:
    caps = capabilities_of(each_driver)
    assert caps.groups == EXPECTED[each_driver.name]
    for name in caps.groups:
        assert getattr(caps, name) is each_driver
    # Every driver keeps tracebacks with its dead letters; none writes its producing methods
    # as coroutines.
    assert caps.dead_letter_traceback
    assert caps.async_def == ()
    assert caps.coroutine_producing is None
    assert caps.purge_by_queue == (caps.dead_letter_admin is not None)


def test_the_sqs_driver_debounces_only_with_a_unique_key_table() -> None:
    """Debounce lives in the unique-key table: without one, the driver opts out of the
    group (its method set to None on the instance), and capabilities_of says so."""
    pytest.importorskip("boto3")
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

    queues = {"default": "https://sqs.us-east-1.amazonaws.com/1/jobs"}
    plain = SQSQueueDriver(region="us-east-1", queues=queues)
    keyed = SQSQueueDriver(region="us-east-1", queues=queues, unique_table="keys")
    assert capabilities_of(plain).debounce is None
    assert capabilities_of(keyed).debounce is keyed
    assert capabilities_of(keyed).groups == (*EXPECTED["sqs"], "debounce")


def test_our_drivers_declare_their_groups_rather_than_leave_them_to_be_guessed() -> None:
    """Every group an in-house driver has is among its bases (the rule's first clause), so
    the class line says what it can do."""
    from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver as SQLite

    declared = {
        field for field, protocol in contract.CAPABILITY_GROUPS if protocol in SQLite.__mro__
    }
    assert declared | {"producing"} == set(SQLITE_GROUPS)
    assert issubclass(SQLite, LeaseExtension) and issubclass(SQLite, Consuming)


# -- the rule: declared, structural, opted out -------------------------------------------------


class _Core(QueueDriver):
    """A third-party driver with only the core methods: an in-memory list, consumed in order."""

    name = "minimal"

    def __init__(self) -> None:
        self.ready: list[ReceivedMessage] = []
        self.held: dict[str, ReceivedMessage] = {}
        self.ids = itertools.count(1)

    def enqueue(self, message: JobMessage) -> EnqueueResult:
        return self.enqueue_in(message, 0)

    def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
        message_id = str(next(self.ids))
        self.ready.append(
            ReceivedMessage(message.encode(), message_id, 1, message.queue, message_id)
        )
        return EnqueueResult(message_id, message.job_id, message.queue)

    def receive(
        self, queues: Sequence[str] | None = None, max_messages: int = 10, wait_seconds: float = 0.0
    ) -> list[ReceivedMessage]:
        taken, self.ready = self.ready[:max_messages], self.ready[max_messages:]
        self.held.update((r.message_id, r) for r in taken)
        return taken

    def ack(self, received: ReceivedMessage) -> None:
        self.held.pop(received.message_id, None)

    def nack(self, received: ReceivedMessage, delay_seconds: float = 0.0) -> None:
        held = self.held.pop(received.message_id)
        self.ready.append(
            ReceivedMessage(held.body, held.receipt, held.attempt + 1, held.queue, held.message_id)
        )


class _WithLeases(_Core):
    """A third-party driver that writes lease extension and counts without declaring them."""

    visibility_timeout = 0.3

    def __init__(self) -> None:
        super().__init__()
        self.extended = threading.Event()

    def extend_leases(self, received: Sequence[ReceivedMessage], seconds: float) -> int:
        self.extended.set()
        return len(received)

    def stats(self) -> dict[str, QueueStats]:
        return {"default": QueueStats("default", ready=len(self.ready))}


def test_a_driver_with_only_the_core_methods_has_only_producing_and_consuming() -> None:
    caps = capabilities_of(_Core())
    assert caps.groups == ("producing", "consuming")
    assert caps.stats is None and caps.lease_extension is None and caps.heartbeats is None
    # QueueDriver's own answers (check, bind, heartbeat_store, ...) are not groups.
    assert caps.setup_check is None and caps.transactions is None


def test_a_group_written_but_not_declared_is_recognised() -> None:
    driver = _WithLeases()
    caps = capabilities_of(driver)
    assert caps.groups == ("producing", "consuming", "lease_extension", "stats")
    assert caps.lease_extension is driver and contract.lease_seconds(driver) == 0.3
    assert caps.stats is not None and caps.stats.stats()["default"].ready == 0


def test_the_worker_extends_leases_a_third_party_driver_wrote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = _WithLeases()
    seen: list[bool] = []

    def slow(payload: object, ctx: Any) -> None:
        # Longer than a third of the lease: the worker renews it meanwhile.
        seen.append(driver.extended.wait(10.0))

    job = define_job(name="slow", handler=slow)
    JobService(driver).enqueue(job, None)
    worker = Worker(
        module=define_module(name="m", jobs=[job]), driver=driver, install_signal_handlers=False
    )
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        summary = worker.run_until_empty(timeout=30)
    assert seen == [True]
    assert summary.counts["done"] == 1
    assert "worker started" in caplog.text
    assert "cannot extend leases" not in caplog.text


def test_part_of_a_group_is_not_the_group() -> None:
    class OnlyPages(_Core):
        def dead_letter_page(self, query: Any, cursor: Any = None, limit: int = 100) -> Any:
            raise AssertionError("not called")

    caps = capabilities_of(OnlyPages())
    assert caps.dead_letter_search is None
    assert missing_methods(OnlyPages(), contract.DeadLetterSearch) == [
        "find_dead_letter",
        "redrive_matching",
        "purge_matching",
    ]


def test_a_group_declared_but_not_written_is_a_type_error_naming_the_method() -> None:
    class Forgetful(_Core, QueueCounts):
        pass

    with pytest.raises(
        TypeError, match="Forgetful declares QueueCounts but does not implement stats"
    ):
        capabilities_of(Forgetful())


def test_a_method_set_to_none_opts_out_of_a_declared_group(tmp_path: Path) -> None:
    class NoLookup(SQLiteQueueDriver):
        find_job = None  # type: ignore[assignment]

    driver = NoLookup(tmp_path / "jobs.db")
    assert capabilities_of(driver).job_lookup is None
    assert capabilities_of(SQLiteQueueDriver(tmp_path / "jobs.db")).job_lookup is not None
    # On the instance too: its own attribute is looked at, not the class's cached answer.
    plain = SQLiteQueueDriver(tmp_path / "jobs.db")
    plain.stats = None  # type: ignore[assignment,method-assign]
    assert capabilities_of(plain).stats is None
    driver.close()
    plain.close()


def test_signature_facts_come_from_the_driver() -> None:
    class OldDeadLetters(_Core):
        def dead_letter(self, body: str, reason: str, *, queue: str | None = None) -> bool:
            return True

        def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[Any]:
            return []

        def redrive(self, ids: Any = None, *, queue: str | None = None) -> int:
            return 0

        def purge_dead_letters(self, ids: Any = None) -> int:  # before queue= was asked for
            return 0

    class AsyncDriver:
        async def enqueue(self, message: JobMessage) -> EnqueueResult: ...
        async def enqueue_in(self, message: JobMessage, delay: float) -> EnqueueResult: ...

    old = capabilities_of(OldDeadLetters())
    assert old.dead_letter_admin is not None
    assert not old.dead_letter_traceback and not old.purge_by_queue
    coroutines = capabilities_of(AsyncDriver())
    assert coroutines.async_def == ("enqueue", "enqueue_in")
    assert coroutines.coroutine_producing is not None
    assert contract.coroutine_methods(coroutines.coroutine_producing).enqueue_at is None


def test_capabilities_is_a_frozen_record() -> None:
    caps = capabilities_of(_Core())
    assert isinstance(caps, Capabilities)
    with pytest.raises(AttributeError):
        caps.stats = None  # type: ignore[misc]


# -- a driver with only the core methods, everywhere ----------------------------------------


def test_the_worker_runs_a_core_driver_and_says_what_it_lacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = _Core()
    ran: list[int] = []
    job = define_job(name="count", handler=lambda payload, ctx: ran.append(payload))
    for n in range(3):
        JobService(driver).enqueue(job, n)
    worker = Worker(
        module=define_module(name="m", jobs=[job]), driver=driver, install_signal_handlers=False
    )
    with caplog.at_level(logging.INFO, logger="glasswork.worker"):
        summary = worker.run_until_empty(timeout=30)
    assert sorted(ran) == [0, 1, 2] and summary.counts["done"] == 3
    assert driver.held == {} and driver.ready == []
    assert "the minimal driver cannot extend leases" in caplog.text
    with pytest.raises(ConfigurationError, match="cannot count pending jobs"):
        worker.run_until_empty(include_delayed=True, timeout=5)


def test_a_worker_on_a_driver_that_cannot_receive_is_refused_at_once() -> None:
    class ProducerOnly(QueueDriver):
        name = "producer-only"

        def enqueue(self, message: JobMessage) -> EnqueueResult:
            return EnqueueResult("1", message.job_id, message.queue)

        def enqueue_in(self, message: JobMessage, delay_seconds: float) -> EnqueueResult:
            return self.enqueue(message)

    job = define_job(name="noop", handler=lambda payload, ctx: None)
    with pytest.raises(ConfigurationError, match="the producer-only driver cannot receive jobs"):
        Worker(module=define_module(name="m", jobs=[job]), driver=ProducerOnly())


def test_commands_say_in_one_line_what_a_core_driver_cannot_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("glasswork.cli._common.driver_from_url", lambda url, **options: _Core())
    for argv, what in [
        (["stats"], "report queue stats"),
        (["dlq", "list"], "list dead letters"),
        (["dlq", "redrive", "--all"], "redrive dead letters"),
        (["dlq", "purge", "--all", "--yes"], "purge dead letters"),
    ]:
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == ""
        said = f"the minimal driver cannot {what}; the SQLite driver can"
        assert err == f"glasswork {argv[0]}: error: {said}\n"


def test_the_dashboard_shows_what_a_core_driver_cannot_do() -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from glasswork.dashboard import create_app

    client = TestClient(create_app(_Core(), csrf_token="t" * 20), base_url="http://127.0.0.1:8765")
    queues = client.get("/").text
    assert "the minimal driver cannot report queue counts" in queues
    assert "the minimal driver cannot record job outcomes per minute" in queues
    assert "the minimal driver keeps no worker heartbeats" in queues
    assert "the minimal driver cannot list dead letters" in client.get("/dead-letters").text
    assert "the minimal driver cannot look up jobs" in client.get("/lookup?job_id=x").text


def test_prometheus_watches_queue_depth_only_where_there_are_counts() -> None:
    pytest.importorskip("prometheus_client")
    from glasswork.jobs.metrics.prometheus import PrometheusMetrics

    core, counted = PrometheusMetrics(), PrometheusMetrics()
    core.watch(_Core())
    counted.watch(_WithLeases())
    assert core._watched is None
    assert counted._watched is not None and counted._watched.depths() == {
        "default": {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    }


# -- the old paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("glasswork.jobs.drivers.base", "QueueDriver", "glasswork.jobs.drivers.contract"),
        ("glasswork.jobs.drivers.base", "DeadLetterQuery", "glasswork.jobs.drivers.records"),
        ("glasswork.jobs.drivers.inspection", "JobFinder", "glasswork.jobs.drivers.contract"),
        ("glasswork.jobs.drivers.inspection", "OutcomeCount", "glasswork.jobs.drivers.records"),
        ("glasswork.jobs.drivers.heartbeats", "HeartbeatStore", "glasswork.jobs.drivers.contract"),
        ("glasswork.jobs.drivers.heartbeats", "FORGET_AFTER", "glasswork.jobs.drivers.records"),
        (
            "glasswork.jobs.drivers.dead_letter_query",
            "search",
            "glasswork.jobs.drivers.dead_letter_search",
        ),
        (
            "glasswork.jobs.drivers.dead_letter_sql",
            "where",
            "glasswork.jobs.drivers.dead_letter_search",
        ),
        ("glasswork.jobs.inspection", "FoundJob", "glasswork.jobs.drivers.records"),
        ("glasswork.jobs.dead_letter_query", "PAGE_SIZE", "glasswork.jobs.drivers.records"),
    ],
)
def test_old_module_paths_of_the_contract_still_import(old: str, name: str, new: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
