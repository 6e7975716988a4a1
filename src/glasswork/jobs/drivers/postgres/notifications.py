"""Wake-ups for waiting receivers: one ``LISTEN`` connection per process, in a thread.

The jobs table's trigger sends ``NOTIFY`` with the queue name when rows are inserted (at the
commit of the inserting transaction), and the driver sends one when it releases jobs. The
listener counts notifications per queue; a receiver takes a :meth:`~Notifications.mark`
*before* it looks for jobs, so a job committed between its look and its wait still wakes it.
When the ``LISTEN`` connection breaks, every receiver is woken (notifications may have been
missed) and the listener reconnects with backoff; receivers fall back to polling meanwhile.
A silent connection is checked every :data:`HEARTBEAT` seconds, so one left half-open by a
failover is found (its check gets no answer within the deadline of :mod:`.deadlines`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence

from psycopg import sql

from . import deadlines
from .connections import describe

Mark = tuple[int, int]

#: Seconds of silence after which the listener checks that its connection still answers.
HEARTBEAT = 10.0

logger = logging.getLogger("glasswork.postgres")


class Notifications:
    """Counts of ``NOTIFY`` messages on ``channel``, per queue, and a way to wait for more."""

    def __init__(
        self,
        conninfo: str,
        channel: str,
        statement_timeout: float,
        *,
        log: logging.Logger = logger,
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.statement_timeout = statement_timeout
        self.log = log
        self._reset()

    def _reset(self) -> None:
        self._changed = threading.Condition()
        self._counts: Counter[str] = Counter()
        self._total = 0
        self._epoch = 0  # bumped when listening starts or stops: anything may have happened
        self._listening = False
        self._tried = False
        self._closing = threading.Event()
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 5.0) -> bool:
        """Start listening (in this process) if not yet started; True while listening. The
        first call waits up to ``timeout`` for the first connection attempt."""
        if self._pid != os.getpid():
            self._reset()  # the listener thread did not survive fork()
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="glasswork-postgres-listen", daemon=True
                )
                self._thread.start()
            self._changed.wait_for(lambda: self._tried, timeout)
            return self._listening

    def mark(self, queues: Sequence[str] | None) -> Mark:
        """Where the counts of ``queues`` (None: all) stand now."""
        with self._changed:
            return self._mark(queues)

    def wait(self, queues: Sequence[str] | None, mark: Mark, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification on ``queues`` after ``mark``;
        True when one came (or the connection changed, so one may have been missed)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._closing.is_set() or self._mark(queues) != mark, timeout
            )

    def close(self) -> None:
        """Stop the listener (within about half a second)."""
        with self._changed:
            self._closing.set()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(2.0)

    def _mark(self, queues: Sequence[str] | None) -> Mark:
        if queues is None:
            return self._epoch, self._total
        return self._epoch, sum(self._counts[q] for q in queues)

    def _listen(self) -> None:
        delay = 0.1
        while not self._closing.is_set():
            try:
                with deadlines.connect(self.conninfo, self.statement_timeout) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._set_listening(True)
                    if delay > 0.1:
                        self.log.warning("listening for new jobs again")
                    delay = 0.1
                    checked = time.monotonic()
                    while not self._closing.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            self._saw(notify.payload)
                        if time.monotonic() - checked > HEARTBEAT:
                            # Silence may be a dead connection: a round trip (bounded by
                            # its deadline) tells.
                            conn.execute("")
                            checked = time.monotonic()
            except Exception as exc:  # whatever broke it, keep listening for the workers
                self._set_listening(False)
                if self._closing.is_set():
                    return
                self.log.warning(
                    "cannot listen for new jobs (%s); waiting receivers poll until it is "
                    "back; reconnecting in %.1fs",
                    describe(exc),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._set_listening(False)

    def _set_listening(self, listening: bool) -> None:
        with self._changed:
            self._listening = listening
            self._tried = True
            self._epoch += 1
            self._changed.notify_all()

    def _saw(self, queue: str) -> None:
        with self._changed:
            self._counts[queue] += 1
            self._total += 1
            self._changed.notify_all()
