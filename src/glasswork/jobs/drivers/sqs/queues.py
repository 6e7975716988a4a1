"""Where each of the SQS driver's queues is: its URL (by configured name, physical name, URL
or ARN), whether it is FIFO, the delays SQS holds on it, its dead-letter queue (configured,
or found from its redrive policy) and its size limit (``MaximumMessageSize``, read once);
and the setup check that asks SQS about each."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...aws.errors import error_code
from ...errors import ConfigurationError
from ...message import MAX_MESSAGE_BYTES
from .clients import Clients
from .problems import DENIED, Settings, explain

logger = logging.getLogger("glasswork.jobs")

#: SQS's largest per-message delay (DelaySeconds); longer delays go to the scheduler table.
MAX_SQS_DELAY_SECONDS = 900


class QueueDirectory:
    """The configured ``queues`` (name → URL) and ``dead_letter_queues`` (name → DLQ URL)
    of one driver, checked here: a URL that is not one, or a DLQ of a queue not configured,
    is a :class:`ConfigurationError` naming the setting (as ``settings`` spells it)."""

    def __init__(
        self,
        queues: Mapping[str, str],
        dead_letter_queues: Mapping[str, str] | None,
        settings: Settings,
        clients: Clients,
    ) -> None:
        if not isinstance(queues, Mapping) or not queues:
            raise ConfigurationError(
                "SQSQueueDriver needs queues={'default': 'https://sqs.<region>.amazonaws.com/"
                "<account>/<queue>', ...}"
            )
        for queue, queue_url in queues.items():
            _check_url(settings.name("queues", queue), queue_url)
        dead_letter_queues = dict(dead_letter_queues or {})
        for queue, queue_url in dead_letter_queues.items():
            _check_url(settings.name("dead_letter_queues", queue), queue_url)
            if queue not in queues:
                where = "the queue.<name>= parameters" if settings.url is not None else "queues"
                raise ConfigurationError(
                    f"{settings.name('dead_letter_queues', queue)} names queue {queue!r}, "
                    f"which is not in {where} ({', '.join(sorted(queues))})"
                )
        self.urls: dict[str, str] = dict(queues)
        self.dead_letter_urls = dead_letter_queues
        self.settings = settings
        self.clients = clients
        # Physical queue name (the last part of a URL or ARN) -> configured name, so
        # records from Lambda, which carry only the queue ARN, find their URL.
        self._by_physical = {url.rstrip("/").rsplit("/", 1)[-1]: q for q, url in queues.items()}
        self._discovered_dlq: dict[str, str | None] = {}
        self._limits: dict[str, int] = {}  # queue URL -> MaximumMessageSize
        self._checked: set[str] = set()  # queue URLs check() found

    # -- names and URLs ----------------------------------------------------------------------

    def queue_name(self, queue: str) -> str:
        """The configured name for ``queue``: a configured name, a physical queue name, a
        queue URL or a queue ARN. Raises :class:`ConfigurationError` for an unknown queue."""
        if queue in self.urls:
            return queue
        physical = queue.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        found = self._by_physical.get(physical)
        if found is None:
            configured = ", ".join(repr(q) for q in sorted(self.urls))
            raise ConfigurationError(
                f"unknown queue {queue!r}: the driver configures {configured}; "
                f"{self.settings.add('queues', '<queue url>', queue)} or set the job's queue "
                "to one of these"
            )
        return found

    def names(self, queues: Sequence[str] | None) -> list[str]:
        """The configured names of ``queues`` (None: every configured queue)."""
        return [self.queue_name(q) for q in queues] if queues is not None else list(self.urls)

    def queue_url(self, queue: str) -> str:
        """The URL of ``queue`` (any form :meth:`queue_name` accepts)."""
        return self.urls[self.queue_name(queue)]

    def is_fifo(self, queue: str) -> bool:
        """Whether ``queue`` is a FIFO queue (its URL ends in ``.fifo``)."""
        return self.queue_url(queue).endswith(".fifo")

    def accepts_delay(self, queue: str, delay_seconds: float) -> bool:
        """Whether SQS itself can hold a message for ``delay_seconds`` on ``queue``."""
        return delay_seconds <= MAX_SQS_DELAY_SECONDS and not self.is_fifo(queue)

    # -- dead-letter queues ------------------------------------------------------------------

    def dead_letter_queue_url(self, queue: str) -> str | None:
        """The DLQ URL for ``queue``: configured, or from its redrive policy (cached)."""
        name = self.queue_name(queue)
        configured = self.dead_letter_urls.get(name)
        if configured is not None:
            return configured
        if name not in self._discovered_dlq:
            self._discovered_dlq[name] = self._discover_dlq(self.urls[name])
        return self._discovered_dlq[name]

    def _discover_dlq(self, url: str) -> str | None:
        response = self.clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["RedrivePolicy"]
        )
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            logger.warning("queue %s has no redrive policy and no DLQ is configured", url)
            return None
        target = str(json.loads(policy).get("deadLetterTargetArn", ""))
        parts = target.split(":")
        if len(parts) != 6:
            return None
        account, dlq_name = parts[4], parts[5]
        # A DLQ lives in its source queue's account and region, so its URL is the source URL
        # with the last two parts swapped (no sqs:GetQueueUrl permission needed).
        base = url.rstrip("/").rsplit("/", 2)[0]
        return f"{base}/{account}/{dlq_name}"

    # -- size limits -------------------------------------------------------------------------

    def message_limit(self, queue: str) -> int:
        """The queue's ``MaximumMessageSize`` (read once; 262,144 when it cannot be read)."""
        return self.limit_of_url(self.queue_url(queue))

    def known_limit(self, url: str) -> int | None:
        """The limit of the queue at ``url`` if it was read already (None: not yet)."""
        return self._limits.get(url)

    def limit_of_url(self, url: str) -> int:
        """The ``MaximumMessageSize`` of the queue at ``url`` (read once)."""
        limit = self._limits.get(url)
        if limit is None:
            try:
                response = self.clients.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["MaximumMessageSize"]
                )
            except (ClientError, BotoCoreError) as exc:
                response = {}
                logger.info("cannot read MaximumMessageSize of %s (%s): using 262,144", url, exc)
            limit = self.remember_limit(url, response)
        return limit

    def remember_limit(self, url: str, response: Mapping[str, Any]) -> int:
        """Keep the limit a ``GetQueueAttributes`` response gives (the async path reads it
        too); the default 262,144 when the response has none."""
        value = response.get("Attributes", {}).get("MaximumMessageSize")
        limit = int(value) if value else MAX_MESSAGE_BYTES
        self._limits[url] = limit
        return limit

    # -- the setup check ---------------------------------------------------------------------

    def check(self, queues: Sequence[str] | None = None) -> None:
        """Ask SQS about each of ``queues`` (None: every configured one) and its configured
        DLQ (``GetQueueAttributes``): no credentials, no region, an endpoint that does not
        answer or a queue that does not exist is a :class:`ConfigurationError` naming the
        setting to fix. A queue these credentials may not describe is left to the calls
        that use it."""
        for name in self.names(queues):
            self._check_queue(name, self.urls[name], "queues")
            dlq = self.dead_letter_urls.get(name)
            if dlq is not None:
                self._check_queue(name, dlq, "dead_letter_queues")

    def _check_queue(self, name: str, url: str, setting: str) -> None:
        if url in self._checked:
            return
        try:
            response = self.clients.checker.get_queue_attributes(
                QueueUrl=url, AttributeNames=["MaximumMessageSize"]
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) in DENIED:
                return
            problem = explain(
                exc,
                self.settings,
                endpoint_url=self.clients.endpoint_url,
                queue=name,
                url=url,
                setting=setting,
            )
            if problem is None:
                raise
            raise problem from exc
        self.remember_limit(url, response)
        self._checked.add(url)


def _check_url(setting: str, url: object) -> None:
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ConfigurationError(f"{setting} must be an SQS queue URL (https://...), got {url!r}")
