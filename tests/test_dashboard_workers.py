"""The queues page's workers panel through Starlette's TestClient, on SQLite and PostgreSQL:
a real worker running (its host, pid, queues, concurrency and jobs in flight), a worker that
stopped beating shown as gone, and none once the worker stopped; a driver without
heartbeats says so. (SQS's Lambda functions: tests/integration/test_dashboard_sqs.py.)"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from dashboard_support import Seeded, shop_driver
from glasswork import define_module
from glasswork.dashboard import create_app
from glasswork.jobs import JobMessage, MockQueueDriver, define_job
from glasswork.jobs.drivers.records import WorkerBeat
from glasswork.jobs.worker import Worker
from pgtest import SLOW_POSTGRESQL

release = threading.Event()
waiting = define_job(name="wait", handler=lambda payload, ctx: release.wait(30), queue="slow")
SlowModule = define_module(name="slow", jobs=[waiting])


@pytest.fixture(params=["sqlite", SLOW_POSTGRESQL])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Seeded]]:
    with shop_driver(request.param, tmp_path) as seeded:
        yield seeded


def worker_rows(page: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-worker="([^"]+)" (data-state="\w+")', page))


def eventually(read: Callable[[], str], ok: Callable[[str], bool], seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.05)


def test_the_panel_shows_running_and_gone_workers_and_none_after_a_stop(
    shop: tuple[Any, Seeded],
) -> None:
    driver, _ = shop
    client = TestClient(create_app(driver), base_url="http://127.0.0.1:8765")
    assert "No worker is running" in client.get("/").text
    release.clear()
    worker = Worker(
        module=SlowModule,
        driver=driver,
        concurrency=4,
        queues=["slow"],
        heartbeat_seconds=0.1,
        install_signal_handlers=False,
    )
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        driver.enqueue(JobMessage.create("wait", None, queue="slow"))
        page = eventually(
            lambda: client.get("/fragments/queues").text,
            lambda text: '<td class="in-flight">1</td>' in text.split('id="workers"')[1],
        )
        (row,) = re.findall(r"<tr data-worker=.*?</tr>", page, re.S)
        assert 'data-state="alive"' in row and f"<code>{socket.gethostname()}</code>" in row
        assert f"pid {os.getpid()}" in row and "<td>slow</td>" in row
        assert '<td class="concurrency">4</td>' in row
        # Another worker that beat once, 0.05 s apart, then stopped: gone after three beats.
        driver.heartbeat_store().record_worker(
            WorkerBeat("died:1:x", "other-host", 1, None, 2, 1, datetime.now(UTC), 0.05)
        )
        states = eventually(
            lambda: client.get("/").text,
            lambda text: worker_rows(text).get("died:1:x") == 'data-state="gone"',
        )
        assert "other-host" in states and "<td>all</td>" in states
    finally:
        release.set()
        worker.stop()
        runner.join(30)
    assert list(worker_rows(client.get("/").text)) == ["died:1:x"]


def test_a_driver_without_heartbeats_says_so() -> None:
    page = TestClient(create_app(MockQueueDriver()), base_url="http://127.0.0.1").get("/").text
    assert "the mock driver keeps no worker heartbeats" in page
