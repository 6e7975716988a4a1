"""Handing a :class:`~glasswork.jobs.DeadLetter` outcome to a driver's ``dead_letter``: the
body, the reason and the traceback of the failure, the same for every worker.

``QueueDriver.dead_letter`` takes ``traceback=`` (keyword-only). A custom driver written
before it did (``dead_letter(body, reason, *, queue=None)``) still works: whether the driver
takes it is decided once, when the worker is built (the driver contract reads its
signature: :attr:`~glasswork.jobs.drivers.contract.Capabilities.dead_letter_traceback`), and
such a driver keeps no traceback.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .drivers.contract import capabilities_of
from .outcomes import DeadLetter

logger = logging.getLogger("glasswork.jobs")


class DeadLetterTarget(Protocol):
    """What a :class:`DeadLetterSender` uses of a driver (``QueueDriver``'s own)."""

    name: str

    def dead_letter(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool: ...


class DeadLetterSender:
    """Sends dead letters to ``driver`` (None: there is none, and nothing is kept).

    ``sender.send(body, outcome, queue)`` calls ``driver.dead_letter`` for the outcome's
    queue (``queue`` for a body that is no job) and returns what it returns; the driver's
    errors propagate."""

    __slots__ = ("driver", "with_traceback")

    def __init__(self, driver: DeadLetterTarget | None) -> None:
        self.driver = driver
        self.with_traceback = driver is not None and capabilities_of(driver).dead_letter_traceback
        if driver is not None and not self.with_traceback:
            logger.info(
                "the %s driver's dead_letter() takes no traceback= argument: its dead letters "
                "keep no traceback (add `traceback: str | None = None` to keep them)",
                driver.name,
            )

    def send(self, body: str, outcome: DeadLetter, queue: str) -> bool:
        driver = self.driver
        if driver is None:
            return False
        target = outcome.message.queue if outcome.message is not None else queue
        if self.with_traceback:
            return driver.dead_letter(
                body, outcome.reason, queue=target, traceback=outcome.traceback
            )
        return driver.dead_letter(body, outcome.reason, queue=target)
