"""``define_job(idempotent=...)``: which runs count as the same, where that is kept, and
for how long."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..durations import Delay, parse_duration
from ..errors import ConfigurationError
from ..message import scoped_key

if TYPE_CHECKING:
    from .store import IdempotencyStore

#: Seconds a completed key is remembered, unless the job says otherwise (one hour).
DEFAULT_EXPIRES = 3600.0


class Idempotency:
    """How an idempotent job dedupes: ``define_job(..., idempotent=Idempotency(...))``.

    * ``store``: where keys are kept (None: the worker's ``idempotency_store``, else its
      driver's own: the SQLite file of the queue, the mock driver's memory);
    * ``key``: payload → key, to make two enqueues of the same payload one run (None: the
      job id, so only redeliveries of one enqueue are deduplicated; a key of None runs the
      job without deduplication);
    * ``expires``: how long a completed key is remembered (seconds, ``"1h"``, a timedelta).

    ``idempotent=True`` is ``Idempotency()``.
    """

    __slots__ = ("expires", "key", "store")

    def __init__(
        self,
        *,
        store: IdempotencyStore | None = None,
        key: Callable[[Any], Any] | None = None,
        expires: Delay = DEFAULT_EXPIRES,
    ) -> None:
        if key is not None and not callable(key):
            raise ConfigurationError(f"Idempotency key must be a function of the payload: {key!r}")
        try:
            seconds = parse_duration(expires)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"Idempotency expires: {exc}") from None
        if not seconds > 0:
            raise ConfigurationError(f"Idempotency expires must be positive, got {expires!r}")
        self.store = store
        self.key = key
        self.expires = seconds

    @classmethod
    def from_option(cls, option: bool | Idempotency | None) -> Idempotency | None:
        """Read ``define_job(idempotent=...)``: True, False/None or an :class:`Idempotency`."""
        if option is None or option is False:
            return None
        if option is True:
            return cls()
        if isinstance(option, Idempotency):
            return option
        raise ConfigurationError(
            f"idempotent must be True, False or Idempotency(...), not {option!r}"
        )

    def __repr__(self) -> str:
        return f"Idempotency(store={self.store!r}, key={self.key!r}, expires={self.expires:g})"


def idempotency_key(job_name: str, key: object) -> str:
    """The stored key of a run: the job name and its key (a job id or a payload's key), one
    string per pair (:func:`~glasswork.jobs.message.scoped_key`). A key over 200
    characters is stored as ``sha256:<hex>`` so any store can hold it; so is one that already
    starts with ``sha256:``, which could otherwise pass for another key's hash."""
    text = str(key)
    if len(text) > 200 or text.startswith(_HASHED):
        import hashlib

        text = _HASHED + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return scoped_key(job_name, text)


_HASHED = "sha256:"
