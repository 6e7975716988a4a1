"""Stopping: SIGTERM, SIGINT, SIGHUP or :meth:`Worker.stop` ask for a graceful stop, a
second signal forces it.

The signal handler only sets flags: it runs on the main thread, between two bytecodes of
whatever that thread does, so it must take no lock the thread might hold. The control loop
polls the flags every turn (a turn waits at most ``poll_interval``, or a long poll while
idle), and reports the signal in the log itself. The control thread never runs a handler,
so a job that hangs, or blocks an event loop, cannot delay a stop.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from types import FrameType

from ..stop_signals import on_stop_signals


class StopControl:
    """Whether a stop was requested (``requested``) or forced (``forced``)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.requested = False
        self.forced = False
        self._noticed: list[str] = []  # signals received and not yet logged

    def reset(self) -> None:
        self.requested = self.forced = False
        self._noticed.clear()

    def request(self, *, force: bool = False) -> None:
        """Ask for a stop (from any thread, but not a signal handler: it wakes the loop)."""
        self._flag(force)
        self.wake()

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        self._noticed.append(signal.Signals(signum).name)
        self._flag(False)

    def _flag(self, force: bool) -> None:
        if force or self.requested:
            self.forced = True
        self.requested = True

    def take_notices(self) -> list[str]:
        """Signals received since the last call, oldest first."""
        taken = self._noticed[:]
        del self._noticed[: len(taken)]
        return taken

    def signals(self, install: bool) -> contextlib.AbstractContextManager[None]:
        """SIGTERM, SIGINT and SIGHUP ask for a stop while the block runs (main thread
        only)."""
        return on_stop_signals(self.on_signal, install)
