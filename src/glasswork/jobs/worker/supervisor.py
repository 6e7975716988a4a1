"""Several worker processes from one command: a supervisor that starts them, starts another
when one dies, and passes stop signals on (``glasswork worker --processes N``), as Celery's
prefork pool and Dramatiq's ``--processes`` do.

One Python process runs one handler at a time (the GIL), so CPU-bound jobs need processes to
use more than one core. Each child is a whole worker, with its own driver connections and its
own ``--concurrency`` threads; the queue's leases already keep them from running a job twice.

* **Start**: ``processes`` children, each in a process group of its own, so a Ctrl-C at the
  terminal (sent to the foreground group) reaches the supervisor alone, which passes it on
  once: a child that got it twice would take it as a forced stop.
* **A child that dies** (killed by a signal, or exiting with an error status) is replaced
  after a backoff: 1 s, doubling with each death in a row up to 30 s, back to 1 s once a
  child has lived 60 s; each death and start is logged. One that exits with status 0 has
  finished (``--until-empty``, or stopped by a signal sent to it alone) and is not replaced.
  A child that exits with an error status within the first seconds of the supervisor's run
  is taken for a setup mistake (a wrong app or driver, which the child has reported): the
  supervisor stops the others and exits with that status rather than restart it forever.
* **SIGTERM, SIGINT, SIGHUP** are passed on to every child: each stops gracefully, letting
  its jobs finish within its grace period; no child is started after that. A second signal
  is passed on too (the children take it as a forced stop). A child still running
  ``kill_after`` seconds after the first signal (its grace period plus a margin) is killed;
  its jobs' leases run out and they run again elsewhere. The supervisor exits 0 when every
  child stopped with status 0, 1 otherwise.
* **If the supervisor itself dies** (SIGKILL, OOM), its children notice within a second
  (:func:`watch_supervisor`: their parent changes) and stop gracefully rather than run on
  unsupervised.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from ..stop_signals import on_stop_signals

logger = logging.getLogger("glasswork.worker.supervisor")

#: Seconds to wait before replacing a dead child: the first time, and at most.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: A child that lived this long resets the backoff.
STABLE_AFTER = 60.0
#: An error exit this soon after the supervisor started is a setup mistake, not a crash.
STARTUP_WINDOW = 10.0
#: How often the supervisor looks at its children.
POLL_INTERVAL = 0.1


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one), for
    ``--processes auto``."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


@dataclass
class _Child:
    """One slot of the supervisor: its current process and its restart state."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None  # when to start the next process of this slot
    deaths: int = 0  # deaths in a row, for the backoff
    status: int | None = None  # the exit status of its last process


class Supervisor:
    """Runs ``processes`` copies of ``command(index)`` (with ``env(index)``) until stopped:
    see the module's description. :meth:`run` returns the exit status."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        processes: int,
        *,
        env: Callable[[int], Mapping[str, str]] | None = None,
        kill_after: float = 60.0,
        first_restart_delay: float = FIRST_RESTART_DELAY,
        max_restart_delay: float = MAX_RESTART_DELAY,
        startup_window: float = STARTUP_WINDOW,
        log: logging.Logger = logger,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.command = command
        self.env = env or (lambda index: os.environ)
        self.kill_after = kill_after
        self.first_restart_delay = first_restart_delay
        self.max_restart_delay = max_restart_delay
        self.startup_window = startup_window
        self.log = log
        self.children = [_Child(i) for i in range(processes)]
        self._signals: list[int] = []  # received, not yet passed on (appended by the handler)
        self._stopping_since: float | None = None
        self._failed: int | None = None  # the status of a child that failed at start

    @property
    def pids(self) -> list[int]:
        """The pids of the children running now."""
        return [c.proc.pid for c in self.children if c.proc is not None]

    def run(self) -> int:
        """Start the children and look after them until they have all stopped."""
        self._began = time.monotonic()
        with on_stop_signals(self._on_signal):
            for child in self.children:
                self._start(child)
            self.log.info(
                "supervisor %d started %d worker processes: %s",
                os.getpid(),
                len(self.children),
                ", ".join(map(str, self.pids)),
            )
            while not self._done():
                self._pass_signals_on()
                self._reap()
                self._restart_due()
                self._kill_overdue()
                time.sleep(POLL_INTERVAL)
        return self._exit_status()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop as if ``signum`` had arrived (from any thread)."""
        self._signals.append(signum)

    # -- the loop's steps --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        # A signal handler: only note it, the loop acts on it within POLL_INTERVAL.
        self._signals.append(signum)

    def _pass_signals_on(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name
            running = [c for c in self.children if c.proc is not None]
            if self._stopping_since is None:
                self._stopping_since = time.monotonic()
                for child in self.children:
                    child.restart_at = None
                self.log.info(
                    "%s: stopping %d worker process(es); each finishes its jobs within its "
                    "grace period",
                    name,
                    len(running),
                )
            else:
                self.log.warning("%s again: passing it on (the worker processes stop now)", name)
            for child in running:
                assert child.proc is not None
                child.proc.send_signal(signum)  # a no-op once it exited

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            status, pid = child.proc.returncode, child.proc.pid
            child.proc, child.status = None, status
            if self._stopping_since is not None:
                level = logging.INFO if status == 0 else logging.WARNING
                self.log.log(level, "worker process %d stopped (%s)", pid, _describe(status))
            elif status == 0:
                self.log.info("worker process %d finished (exit status 0): not replaced", pid)
            elif status > 0 and now - self._began < self.startup_window:
                self.log.error(
                    "worker process %d failed as it started (%s): stopping the others",
                    pid,
                    _describe(status),
                )
                self._failed = status
                self.stop()
            else:
                if now - child.started >= STABLE_AFTER:
                    child.deaths = 0
                delay = min(self.first_restart_delay * 2**child.deaths, self.max_restart_delay)
                child.deaths += 1
                child.restart_at = now + delay
                self.log.warning(
                    "worker process %d died (%s); starting another in %.1fs",
                    pid,
                    _describe(status),
                    delay,
                )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now:
                child.restart_at = None
                self._start(child)
                assert child.proc is not None
                self.log.info("worker process %d started", child.proc.pid)

    def _kill_overdue(self) -> None:
        since = self._stopping_since
        if since is None or time.monotonic() - since < self.kill_after:
            return
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                self.log.error(
                    "worker process %d still running %.0fs after the stop: killing it (its "
                    "jobs run again once their leases run out)",
                    child.proc.pid,
                    self.kill_after,
                )
                child.proc.kill()

    def _done(self) -> bool:
        if any(c.proc is not None for c in self.children):
            return False
        return self._stopping_since is not None or all(c.restart_at is None for c in self.children)

    def _exit_status(self) -> int:
        if self._failed is not None:
            return self._failed
        if any(c.status != 0 for c in self.children):
            return 1
        self.log.info("all worker processes stopped")
        return 0

    def _start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(
            list(self.command(child.index)),
            env=dict(self.env(child.index)),
            # A group of its own: a terminal's Ctrl-C reaches the supervisor alone.
            process_group=0,
        )
        child.started = time.monotonic()
        child.status = None


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def watch_supervisor(supervisor_pid: int, on_gone: Callable[[], None]) -> threading.Thread:
    """In a child: call ``on_gone`` once when the supervisor (its parent, ``supervisor_pid``)
    is gone, which the parent's pid changing tells, checked every second."""

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(1.0)
        logger.warning("the supervisor (pid %d) is gone: stopping this worker", supervisor_pid)
        on_gone()

    thread = threading.Thread(target=watch, name="glasswork-supervisor-watch", daemon=True)
    thread.start()
    return thread
