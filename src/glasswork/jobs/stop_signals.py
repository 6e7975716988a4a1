"""SIGTERM and SIGINT as stop requests, for the long-running processes (the worker, the
scheduler loop): a handler installed for a block, on the main thread only (Python delivers
signals there), and the previous handlers put back after it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

Handler = Callable[[int, FrameType | None], None]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def on_stop_signals(handler: Handler, install: bool = True) -> Iterator[None]:
    """``handler`` answers SIGTERM and SIGINT while the block runs (nothing is installed
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
