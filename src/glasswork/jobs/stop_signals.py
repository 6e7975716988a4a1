"""SIGTERM, SIGINT and SIGHUP as stop requests, for the long-running processes (the worker,
the scheduler loop): a handler installed for a block, on the main thread only (Python
delivers signals there), and the previous handlers put back after it.

SIGHUP is what a process gets when its terminal closes (an SSH session that drops, a closed
terminal window): left to its default it kills the process on the spot, leaving its jobs in
flight until their leases run out, so it stops gracefully like the others."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

Handler = Callable[[int, FrameType | None], None]

if sys.platform == "win32":  # no SIGHUP
    STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
else:
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextlib.contextmanager
def on_stop_signals(handler: Handler, install: bool = True) -> Iterator[None]:
    """``handler`` answers SIGTERM, SIGINT and SIGHUP while the block runs (nothing is installed
    off the main thread, or when ``install`` is false)."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
