"""What the dashboard tests share.

* :func:`seed` fills a SQLite file the way a real app would: the shop app's jobs enqueued
  and run by a real Worker (done, retried and dead-lettered runs, recorded by its outcome
  log), dead letters whose payload and reason carry HTML, a malformed body, jobs waiting;
  :func:`seed_driver` does the same on any driver that stores outcomes (PostgreSQL).
* :func:`seed_sqs` does what SQS allows of it on a moto server: queues with DLQs and a
  scheduler table, declined charges dead-lettered by a real Worker, jobs waiting.
* :func:`serve_dashboard` runs ``glasswork dashboard`` in its own process on a free
  loopback port over that file (or another driver URL).
* :func:`shop_driver` is the seeded shop on SQLite or PostgreSQL (a schema of its own);
  :func:`bury` adds many dead letters at once, :func:`set_failed_at` dates them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures_app.shop import ShopModule, charge_card, resize_image, send_receipt  # noqa: E402
from glasswork.jobs import JobMessage, JobService, Worker  # noqa: E402
from glasswork.jobs.drivers.contract import QueueDriver  # noqa: E402
from glasswork.jobs.drivers.records import OutcomeCount  # noqa: E402
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver  # noqa: E402
from glasswork.jobs.metrics.outcome_log import OutcomeLog  # noqa: E402

if TYPE_CHECKING:
    from glasswork.jobs.drivers.sqs import SQSQueueDriver

APP = "fixtures_app.shop:ShopModule"
XSS_NOTE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
MALFORMED_BODY = "<script>window.__xss=3</script> not a job message"


@dataclass(frozen=True)
class Seeded:
    declined_job_id: str  # dead-lettered charge-card, XSS in payload and reason
    waiting_job_id: str  # send-receipt delayed by an hour


#: The shop seeded once per test process (a worker's run, retries included, takes a second),
#: and copied for each test that asks: (the file, what was seeded), by ``earlier_history``.
_SEEDED: dict[bool, tuple[Path, Seeded]] = {}


def seed(path: Path, *, earlier_history: bool = False) -> Seeded:
    """The shop's jobs, run by a worker (see :func:`seed_driver`), in the SQLite file
    ``path``: a copy of the file the first call of the test process seeded."""
    if earlier_history not in _SEEDED:
        first = Path(tempfile.mkdtemp(prefix="glasswork-shop-")) / "jobs.db"
        driver = SQLiteQueueDriver(first)
        try:
            seeded = seed_driver(driver, earlier_history=earlier_history)
        finally:
            driver.close()  # the last connection: the WAL is checkpointed into the file
        atexit.register(shutil.rmtree, first.parent, ignore_errors=True)
        _SEEDED[earlier_history] = (first, seeded)
    first, seeded = _SEEDED[earlier_history]
    shutil.copyfile(first, path)
    return seeded


def seed_driver(driver: QueueDriver, *, earlier_history: bool = False) -> Seeded:
    """Run the shop's jobs on ``driver`` (one that stores outcome counts: SQLite,
    PostgreSQL). ``earlier_history`` also records outcome counts for the previous hour's
    minutes (a worker cannot run in the past), so a screenshot shows a full chart."""
    jobs = JobService(driver)
    for order in range(6):
        jobs.enqueue(send_receipt, {"order_id": order, "fail_times": order % 3})
    declined = jobs.enqueue(charge_card, {"decline": True, "note": XSS_NOTE})
    jobs.enqueue(charge_card, {"decline": True, "note": "insufficient funds"})
    jobs.enqueue(charge_card, {"amount": 12})
    jobs.enqueue(resize_image, {"image": "cat.png"})
    worker = Worker(module=ShopModule, driver=driver, install_signal_handlers=False)
    worker.run_until_empty(include_delayed=True, timeout=60)
    for sink in worker.metrics:
        if isinstance(sink, OutcomeLog):
            sink.flush()
    driver.dead_letter(MALFORMED_BODY, "MalformedMessageError: <b>not JSON</b>", queue="default")
    waiting = jobs.enqueue_in(send_receipt, {"order_id": 100}, 3600)
    jobs.enqueue_in(resize_image, {"image": "dog.png"}, 600)
    if earlier_history:
        driver.record_outcomes(_earlier_hour())  # type: ignore[attr-defined]
    return Seeded(declined.job_id, waiting.job_id)


@dataclass(frozen=True)
class SQSShop:
    """The shop on SQS (moto): its driver, the URL naming it, what was seeded."""

    url: str
    driver: SQSQueueDriver
    seeded: Seeded


def seed_sqs(endpoint: str, prefix: str, region: str = "us-east-1") -> SQSShop:
    """Queues ``<prefix>-emails``, ``-payments``, ``-media``, each with a DLQ (found through
    its redrive policy) and a scheduler table on the moto server at ``endpoint``: two
    declined charges dead-lettered by a real Worker (XSS in one), a malformed body
    dead-lettered, a receipt an hour away (in the scheduler table) and a resize 10 minutes
    away (SQS's own delay). AWS credentials come from the environment."""
    import boto3

    from glasswork.jobs.drivers.sqs import SQSQueueDriver
    from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_table

    sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint)
    queues = {}
    for name in ("emails", "payments", "media"):
        dlq = sqs.create_queue(QueueName=f"{prefix}-{name}-dlq")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        policy = {"deadLetterTargetArn": arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
        attributes = {"RedrivePolicy": json.dumps(policy)}
        queues[name] = sqs.create_queue(QueueName=f"{prefix}-{name}", Attributes=attributes)[
            "QueueUrl"
        ]
    table = f"{prefix}-scheduled"
    create_scheduler_table(
        table, client=boto3.client("dynamodb", region_name=region, endpoint_url=endpoint)
    )
    options: dict[str, Any] = {"region": region, "endpoint_url": endpoint, "scheduler_table": table}
    driver = SQSQueueDriver(queues=queues, **options)
    jobs = JobService(driver)
    declined = jobs.enqueue(charge_card, {"decline": True, "note": XSS_NOTE})
    jobs.enqueue(charge_card, {"decline": True, "note": "insufficient funds"})
    jobs.enqueue(charge_card, {"amount": 12})
    jobs.enqueue(resize_image, {"image": "cat.png"})
    worker = Worker(module=ShopModule, driver=driver, install_signal_handlers=False)
    summary = worker.run_until_empty(timeout=60)
    assert (summary.done, summary.dead_lettered) == (2, 2), summary
    driver.dead_letter(MALFORMED_BODY, "MalformedMessageError: <b>not JSON</b>", queue="emails")
    waiting = jobs.enqueue_in(send_receipt, {"order_id": 100}, 3600)
    jobs.enqueue_in(resize_image, {"image": "dog.png"}, 600)
    query = {**options, **{f"queue.{name}": url for name, url in queues.items()}}
    return SQSShop(f"sqs://?{urlencode(query)}", driver, Seeded(declined.job_id, waiting.job_id))


@contextlib.contextmanager
def shop_driver(kind: str, tmp_path: Path) -> Iterator[tuple[Any, Seeded]]:
    """The shop run by a real worker on ``kind`` (``"sqlite"``: a file in ``tmp_path``;
    ``"postgresql"``: a schema of its own): the driver and what was seeded."""
    if kind == "postgresql":
        from glasswork.jobs.drivers.postgres import PostgresQueueDriver
        from pgtest import dsn, fresh_schema

        with fresh_schema() as schema, PostgresQueueDriver(dsn(), schema=schema) as postgres:
            yield postgres, seed_driver(postgres)
        return
    info = seed(tmp_path / "jobs.db")
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    try:
        yield driver, info
    finally:
        driver.close()


def bury(
    driver: Any,
    count: int,
    reason: str,
    *,
    queue: str = "emails",
    job_name: str = "send-receipt",
) -> list[str]:
    """Dead-letter ``count`` jobs in one transaction (a real worker takes too long for
    thousands) on a SQLite or PostgreSQL driver; returns their job ids, oldest first."""
    messages = [JobMessage.create(job_name, {"n": n}, queue=queue) for n in range(count)]
    rows = [(queue, m.job_name, m.job_id, m.encode(), reason) for m in messages]
    if isinstance(driver, SQLiteQueueDriver):
        now = time.time()
        with driver._transaction() as conn:
            conn.executemany(
                "INSERT INTO glasswork_dead_letters (queue, job_name, job_id, body, reason, "
                "failed_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )
    else:
        import psycopg

        table = f'"{driver.schema}".glasswork_dead_letters'
        with psycopg.connect(driver.dsn) as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (queue, job_name, job_id, body, reason) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
    return [m.job_id for m in messages]


def set_failed_at(driver: Any, job_ids: list[str], when: datetime) -> None:
    """Say the dead letters of ``job_ids`` failed at ``when``."""
    if isinstance(driver, SQLiteQueueDriver):
        with driver._transaction() as conn:
            conn.executemany(
                "UPDATE glasswork_dead_letters SET failed_at = ? WHERE job_id = ?",
                [(when.timestamp(), j) for j in job_ids],
            )
        return
    import psycopg

    with psycopg.connect(driver.dsn) as conn:
        conn.execute(
            f'UPDATE "{driver.schema}".glasswork_dead_letters SET failed_at = %s '
            "WHERE job_id = ANY(%s)",
            (when, job_ids),
        )


def _earlier_hour() -> list[OutcomeCount]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    counts = []
    for ago in range(1, 60):
        minute = now - timedelta(minutes=ago)
        wave = 8 + (ago * 7) % 13
        counts.append(OutcomeCount(minute, "emails", "send-receipt", "done", wave))
        if ago % 4 == 0:
            counts.append(OutcomeCount(minute, "emails", "send-receipt", "retry", ago % 5 + 1))
        if ago % 11 == 0:
            counts.append(OutcomeCount(minute, "payments", "charge-card", "dead_letter", 1))
    return counts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_dashboard(
    workdir: Path,
    *options: str,
    env: dict[str, str] | None = None,
    driver_url: str = "sqlite:///jobs.db",
    app: str = APP,
) -> Iterator[str]:
    """``glasswork dashboard`` over ``driver_url`` (default ``workdir/jobs.db``) with the shop
    app (or ``app``), on a free loopback port; yields its URL. Its output goes to
    ``workdir/dashboard.log``."""
    port = free_port()
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "glasswork.cli", "dashboard", "--driver", driver_url]
    command += ["--app", app, "--port", str(port), *options]
    log_path = workdir / "dashboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=workdir
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_up(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/static/dashboard.css", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (401 when it asks for credentials)
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not start: {log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.1)
