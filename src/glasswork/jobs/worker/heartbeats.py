"""HeartbeatWriter: the worker's row in the driver's heartbeat store, beaten from a thread of
its own (see :mod:`glasswork.jobs.drivers.heartbeats`).

A beat is one small write every ``every`` seconds, off the control thread, so a slow store
never delays receiving or settling jobs; a failed beat is logged once per outage and
retried at the next. At a clean stop the row is deleted.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from ..drivers.contract import HeartbeatStore
from ..drivers.records import WorkerBeat


class HeartbeatWriter:
    """Beats ``store`` every ``every`` seconds with the worker's ``in_flight()`` count, from
    :meth:`start` until :meth:`stop`."""

    def __init__(
        self,
        store: HeartbeatStore,
        *,
        queues: Sequence[str] | None,
        concurrency: int,
        in_flight: Callable[[], int],
        every: float,
        log: logging.Logger,
    ) -> None:
        self.store = store
        self.every = every
        self.log = log
        self._in_flight = in_flight
        host = socket.gethostname()
        self._beat = WorkerBeat(
            f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            host,
            os.getpid(),
            tuple(queues) if queues is not None else None,
            concurrency,
            0,
            datetime.now(UTC),
            every,
        )
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="glasswork-heartbeat", daemon=True)

    @property
    def worker_id(self) -> str:
        return self._beat.worker_id

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and delete the worker's row (a worker that stopped is not gone)."""
        self._stop.set()
        self._thread.join(5.0)
        try:
            self.store.remove_worker(self.worker_id)
        except Exception as exc:
            self.log.warning(
                "could not remove worker %s from the heartbeat store (it will show as gone): %s",
                self.worker_id,
                exc,
            )

    def _run(self) -> None:
        while True:
            self._write()
            if self._stop.wait(self.every):
                return

    def _write(self) -> None:
        beat = replace(self._beat, in_flight=max(0, self._in_flight()))
        try:
            self.store.record_worker(beat)
        except Exception as exc:
            if not self._failing:
                self.log.warning(
                    "could not write worker %s's heartbeat (retrying every %gs): %s",
                    self.worker_id,
                    self.every,
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            self.log.info("worker %s's heartbeat is written again", self.worker_id)
        self._failing = False
