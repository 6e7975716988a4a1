"""The idempotency store contract: claim a key, complete or release it; records expire."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

IN_PROGRESS = "in_progress"
COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a store holds for a key: ``status`` (``in_progress`` or ``completed``), when the
    record lapses (``expires_at``, epoch seconds) and the ``token`` of the run that wrote it."""

    key: str
    status: str
    expires_at: float
    token: str

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


class IdempotencyStore(ABC):
    """Where idempotency keys live. Every write is conditional, so two workers never both
    claim a key, and a run whose claim lapsed cannot complete or release its successor's.

    A record past its ``expires_at`` counts as absent, whether or not it is still stored: an
    in-progress record lapses when its run's time is up (its worker died), a completed one
    when the job's ``expires`` has passed.
    """

    #: Whether calls block on I/O (the worker then makes them off its event loop).
    blocking: ClassVar[bool] = True

    @abstractmethod
    def claim(self, key: str, token: str, until: float) -> IdempotencyRecord | None:
        """Record ``key`` as in progress for ``token`` until ``until`` (epoch seconds), unless
        a live record holds it. None when claimed; otherwise the live record."""

    @abstractmethod
    def complete(self, key: str, token: str, expires_at: float) -> bool:
        """Mark the claim of ``token`` completed, remembered until ``expires_at``. False when
        ``token`` no longer holds the key."""

    @abstractmethod
    def release(self, key: str, token: str) -> bool:
        """Drop the claim of ``token`` (its run failed), so the next delivery runs. False
        when ``token`` no longer holds the key."""

    @abstractmethod
    def get(self, key: str) -> IdempotencyRecord | None:
        """The record of ``key`` as stored (expired or not), or None."""
