"""JobService: validate a payload, build its message, hand it to the driver."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .definition import JobDefinition
from .drivers.base import EnqueueResult, QueueDriver
from .durations import Delay, parse_duration
from .message import JobMessage
from .telemetry import traced_send


class JobService:
    """Enqueue jobs now, after a delay, or at a time.

    >>> service = JobService(MockQueueDriver())                     # doctest: +SKIP
    >>> service.enqueue(send_welcome_email, {"user_id": "123"})      # doctest: +SKIP
    >>> service.enqueue_in(send_welcome_email, {"user_id": "123"}, "10m")  # doctest: +SKIP

    Payloads are validated before anything is sent (:class:`InvalidJobPayloadError`), the
    message is checked against the 256 KiB limit (:class:`PayloadTooLargeError`), and drivers
    that keep unique keys refuse a duplicate (:class:`DuplicateJobError`). While tracing is on
    (:mod:`glasswork.jobs.telemetry`), each call sends inside an OpenTelemetry PRODUCER span
    whose context travels with the message.
    """

    def __init__(self, driver: QueueDriver, default_queue: str = "default") -> None:
        if not isinstance(driver, QueueDriver):
            raise TypeError(f"driver must be a QueueDriver, got {type(driver).__name__}")
        self.driver = driver
        self.default_queue = default_queue

    def enqueue(
        self, job: JobDefinition[Any], payload: Any = None, *, connection: Any = None
    ) -> EnqueueResult:
        """Enqueue ``job`` to run as soon as a worker is free.

        ``connection``: write through your own database connection, inside your open
        transaction, so the job exists if and only if that transaction commits (drivers on
        a database, such as PostgreSQL; others raise :class:`ConfigurationError`)."""
        return traced_send(self._driver(connection).enqueue, self.build_message(job, payload))

    def enqueue_in(
        self, job: JobDefinition[Any], payload: Any, delay: Delay, *, connection: Any = None
    ) -> EnqueueResult:
        """Enqueue ``job`` to run after ``delay``: ``"30s"``, ``"10m"``, ``"1h30m"``, seconds
        or a timedelta."""
        seconds = parse_duration(delay)
        message = self.build_message(job, payload)
        driver = self._driver(connection)
        if seconds == 0:
            return traced_send(driver.enqueue, message)
        return traced_send(driver.enqueue_in, message, seconds)

    def enqueue_at(
        self, job: JobDefinition[Any], payload: Any, when: datetime, *, connection: Any = None
    ) -> EnqueueResult:
        """Enqueue ``job`` to run at ``when``, an aware datetime (a time in the past: now)."""
        if not isinstance(when, datetime):
            raise TypeError(f"enqueue_at needs a datetime, got {type(when).__name__}")
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"enqueue_at needs an aware datetime, got naive {when.isoformat()}; "
                "use e.g. datetime.now(UTC) + timedelta(hours=1)"
            )
        return traced_send(
            self._driver(connection).enqueue_at, self.build_message(job, payload), when
        )

    def enqueue_many(
        self,
        job: JobDefinition[Any],
        payloads: Iterable[Any],
        *,
        delay: Delay | None = None,
        connection: Any = None,
    ) -> list[EnqueueResult]:
        """Enqueue one job per payload, in batches where the driver has them. Every payload is
        validated first: if one is invalid, nothing is sent."""
        seconds = parse_duration(delay) if delay is not None else 0.0
        messages = [self.build_message(job, p) for p in payloads]
        if not messages:
            return []
        return traced_send(self._driver(connection).enqueue_many, messages, seconds)

    def _driver(self, connection: Any) -> QueueDriver:
        return self.driver if connection is None else self.driver.bind(connection)

    def build_message(self, job: JobDefinition[Any], payload: Any) -> JobMessage:
        """Validate ``payload`` and build the message, checking the size limit."""
        if not isinstance(job, JobDefinition):
            raise TypeError(f"expected a job made by define_job, got {job!r}")
        value = job.validate(payload)
        message = JobMessage.create(
            job.name,
            job.to_wire(value),
            queue=job.queue or self.default_queue,
            unique_key=job.unique_key_for(value),
            group_id=job.group_id_for(value),
        )
        message.encode()  # raises PayloadTooLargeError before any driver sees it
        return message
