"""SQLiteQueueDriver on a full disk: its disk reserve, and what each write does when the
disk is full, on a real tmpfs filled up (``disk`` in conftest.py; root only). The worker's
side, in real processes, is in tests/integration/test_worker_processes.py."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from glasswork.jobs import EnqueueError, JobMessage
from glasswork.jobs.drivers.sqlite import SQLiteQueueDriver
from glasswork.jobs.drivers.sqlite import reserve as sqlite_reserve
from glasswork.jobs.drivers.urls import driver_from_url
from glasswork.jobs.errors import ConfigurationError

KIB = 1024


def fill(driver: SQLiteQueueDriver, large_every: int = 3) -> list[str]:
    """Enqueue jobs until the disk is full, a large one (20 kB) every ``large_every``, the
    others small (2 kB); the ids of those stored."""
    ids: list[str] = []
    while True:
        pad = "x" * (20_000 if len(ids) % large_every == 0 else 2_000)
        message = JobMessage.create("ping", {"n": len(ids), "pad": pad})
        try:
            driver.enqueue(message)
        except EnqueueError as exc:
            refused = str(exc)
            break
        ids.append(message.job_id)
    assert refused.endswith("database or disk is full; nothing was stored")
    assert driver.find_job(message.job_id) == []  # nothing of it was written
    return ids


def drain(driver: SQLiteQueueDriver) -> list[str]:
    """Claim and ack every due job; their ids."""
    done: list[str] = []
    while batch := driver.receive(max_messages=10):
        driver.ack_many(batch)
        done += [JobMessage.from_json(r.body).job_id for r in batch]
    return done


def autocheckpoint(driver: SQLiteQueueDriver) -> int:
    return int(driver._conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0])


# -- the reserve --------------------------------------------------------------------------------


def test_a_driver_keeps_a_reserve_next_to_its_file(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db")
    reserve = tmp_path / "jobs.db-reserve"
    size = min(4 * KIB * KIB, shutil.disk_usage(tmp_path).total // 16) // 4096 * 4096
    assert reserve.stat().st_size == size
    assert reserve.stat().st_blocks * 512 >= size  # allocated, not a sparse file
    # The WAL is checkpointed every half reserve: a checkpoint's growth fits in the reserve.
    assert autocheckpoint(driver) == size // 2 // 4096
    assert driver._conn().execute("PRAGMA secure_delete").fetchone()[0] == 2  # FAST


def test_no_reserve_when_asked_or_when_only_inspecting(tmp_path: Path) -> None:
    driver = SQLiteQueueDriver(tmp_path / "jobs.db", disk_reserve=0)
    assert not (tmp_path / "jobs.db-reserve").exists()
    assert autocheckpoint(driver) == 1000  # SQLite's default
    SQLiteQueueDriver(tmp_path / "jobs.db", create=False)  # the read-only commands' driver
    assert not (tmp_path / "jobs.db-reserve").exists()
    driver_from_url(f"sqlite:///{tmp_path / 'other.db'}?disk_reserve=65536")
    assert (tmp_path / "other.db-reserve").stat().st_size == 65536


@pytest.mark.parametrize("value", [-1, 1.5, "4m", True])
def test_disk_reserve_must_be_a_number_of_bytes(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigurationError, match="disk_reserve must be a number of bytes"):
        SQLiteQueueDriver(tmp_path / "jobs.db", disk_reserve=value)  # type: ignore[arg-type]


# -- a full disk ----------------------------------------------------------------------------


def test_on_a_full_disk_claims_acks_retries_and_dead_letters_go_on(
    disk: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    small = disk("2m")
    driver = SQLiteQueueDriver(small / "jobs.db", visibility_timeout=30)
    # Large jobs only: deleting one frees pages that must not all be written again.
    ids = fill(driver, large_every=1)
    with caplog.at_level(logging.WARNING, logger="glasswork.jobs"):
        batch = driver.receive(max_messages=10)  # the first write to find the disk full
    assert len(batch) == 10
    assert not (small / "jobs.db-reserve").exists()
    assert caplog.text.count("is full: released its 128 KiB reserve") == 1

    driver.ack_many(batch[:4])
    driver.nack(batch[4], 0.0)  # a retry: due again
    assert driver.dead_letter(batch[5].body, "failed for good", queue="default")
    driver.ack(batch[5])
    assert driver.extend_leases(batch[6:], 30) == 4
    driver.release_many(batch[6:])  # handed back at shutdown

    done = drain(driver)
    assert sorted(done + [JobMessage.from_json(r.body).job_id for r in batch[:4]]) == sorted(
        set(ids) - {JobMessage.from_json(batch[5].body).job_id}
    )
    [dead] = driver.dead_letters()
    assert (dead.job_id, dead.reason) == (
        JobMessage.from_json(batch[5].body).job_id,
        "failed for good",
    )
    assert driver.pending_count() == 0
    # Room freed in the file: new jobs are stored again.
    driver.enqueue(JobMessage.create("ping", {"after": True}))
    assert len(drain(driver)) == 1


def test_without_a_reserve_a_full_disk_stalls_said_once_and_loses_nothing(
    disk: Callable[[str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    small = disk("2m")
    other = small / "other-data"
    other.write_bytes(os.urandom(1024 * KIB))
    driver = SQLiteQueueDriver(small / "jobs.db", disk_reserve=0)
    ids = fill(driver)
    with caplog.at_level(logging.ERROR, logger="glasswork.jobs"):
        for _ in range(3):
            with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
                driver.receive()
    assert caplog.text.count("is full and its disk reserve is used up") == 1
    assert driver.pending_count() == len(ids)
    other.unlink()  # space freed: the jobs run
    assert sorted(drain(driver)) == sorted(ids)


def test_a_released_reserve_is_put_back_once_there_is_room(
    disk: Callable[[str], Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_reserve, "RESTORE_EVERY", 0.0)
    small = disk("2m")
    other = small / "other-data"
    other.write_bytes(os.urandom(512 * KIB))
    driver = SQLiteQueueDriver(small / "jobs.db")
    reserve = small / "jobs.db-reserve"
    ids = fill(driver)
    batch = driver.receive()
    assert not reserve.exists()
    driver.ack_many(batch)
    assert not reserve.exists()  # no room for it yet
    other.unlink()
    with caplog.at_level(logging.INFO, logger="glasswork.jobs"):
        assert len(drain(driver)) == len(ids) - len(batch)  # its writes look for room
    assert reserve.stat().st_size == 128 * KIB
    assert "the disk reserve " + str(reserve) + " is back in place" in caplog.text
