"""Dead letters on SQS: what the driver adds to a dead letter, and listing, redriving and
purging the DLQs of :class:`~glasswork.jobs.SQSQueueDriver`'s queues.

* **Listing** peeks: messages are received with a short visibility timeout and released at
  once (``ChangeMessageVisibility`` to 0), so nothing is consumed; the DLQs of several
  queues are peeked side by side. A DLQ message's ``id`` is its SQS ``MessageId``, stable
  across receives.
* **Redrive** of a whole DLQ that serves one queue uses SQS's own ``StartMessageMoveTask``
  (asynchronous, on SQS's side) where the DLQ supports it; otherwise, and for ``ids``,
  messages are received, sent back to their queue and deleted from the DLQ, 10 a request.
  With unique keys (``unique_table``) every redriven job takes its key again, and one whose
  key is held by a pending job stays in the DLQ, as on SQLite.
* **Purge** of a whole DLQ is ``PurgeQueue``; for ``ids`` (or when SQS refuses a purge that
  soon after the last) messages are received and deleted.
* **Search** (the dashboard's pages, groups and actions on a group): SQS cannot search or
  page a queue, so a page peeks at up to :data:`SCAN_LIMIT` messages of each DLQ and filters,
  sorts (by the time the message was sent to the DLQ) and groups them in memory
  (:func:`~glasswork.jobs.drivers.dead_letter_query.search`); its note says so. An action on the
  matches of a search peeks every message afresh and acts on those that match. One dead
  letter by id is peeked for until found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import DuplicateJobError, GlassworkError, MalformedMessageError, bounded
from ...message import JobMessage, identify
from ..dead_letter_search import search, time_cursor
from ..lifecycle import fairness_of
from ..records import DeadLetterPage, DeadLetterQuery, DeadLetterRecord
from .clients import Clients
from .fifo import fifo_id
from .queues import QueueDirectory
from .unique import UniqueKeys

logger = logging.getLogger("glasswork.jobs")

#: Message attributes set on dead-letter sends.
REASON_ATTRIBUTE = "GlassworkReason"
SOURCE_QUEUE_ATTRIBUTE = "GlassworkSourceQueue"
TRACEBACK_ATTRIBUTE = "GlassworkTraceback"
#: The longest reason kept as an attribute (the full one is in the worker's log).
MAX_REASON_CHARS = 4096
#: Seconds a listed (peeked) message stays hidden before it is released; also the time a
#: redrive or purge has to act on what it received.
PEEK_SECONDS = 30

_CUT = b"[... cut to fit the message size ...]\n"
# Characters SQS accepts in message attribute values (the XML 1.0 character set).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BATCH = 10
#: DLQs peeked at once.
MAX_PARALLEL_PEEKS = 8
#: Messages a search peeks at, at most, in each DLQ.
SCAN_LIMIT = 1000
_NO_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1})


class UnknownDeadLetterError(GlassworkError, LookupError):
    """Dead-letter ids that are not in the DLQs looked at; nothing was changed."""


def dead_letter_attributes(
    body: str, reason: str, queue: str, limit: int, traceback: str | None = None
) -> dict[str, Any]:
    """The attributes of a dead-letter send, within the DLQ's size ``limit`` (SQS counts a
    message's attributes, names, types and values, against it): the source queue, the
    reason (its start), then the traceback (its end, where the error was raised), each
    trimmed to what the body and those before leave. A message at the limit gets none, so
    it can always be dead-lettered."""
    room = limit - len(body.encode("utf-8"))
    text = _NOT_XML.sub("?", reason)[:MAX_REASON_CHARS] or "unknown"
    trace = bounded(_NOT_XML.sub("?", traceback)) if traceback else ""
    attributes: dict[str, Any] = {}
    for name, value in (
        (SOURCE_QUEUE_ATTRIBUTE, queue),
        (REASON_ATTRIBUTE, text),
        (TRACEBACK_ATTRIBUTE, trace),
    ):
        fits = max(0, room - len(name) - len("String"))
        encoded = value.encode("utf-8")
        if name == TRACEBACK_ATTRIBUTE:
            kept = _end_of(encoded, fits)
        else:
            kept = encoded[:fits].decode("utf-8", "ignore")
        if kept:
            attributes[name] = {"DataType": "String", "StringValue": kept}
            room -= len(name) + len("String") + len(kept.encode("utf-8"))
    return attributes


def _end_of(encoded: bytes, size: int) -> str:
    """The last ``size`` bytes of ``encoded`` at most, as text, marked where they were cut."""
    if len(encoded) <= size:
        return encoded.decode("utf-8")
    room = size - len(_CUT)
    if room <= 0:
        return ""
    return _CUT.decode() + encoded[len(encoded) - room :].decode("utf-8", "ignore")


@dataclass(slots=True)
class _Held:
    """A DLQ message received (and hidden) by a peek."""

    dlq: str
    message: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.message["MessageId"])

    @property
    def receipt(self) -> str:
        return str(self.message["ReceiptHandle"])

    @property
    def body(self) -> str:
        return str(self.message.get("Body", ""))

    def attribute(self, name: str) -> str | None:
        value = self.message.get("MessageAttributes", {}).get(name, {}).get("StringValue")
        return value if isinstance(value, str) else None


class SQSDeadLetters:
    """The DLQs of one driver's queues (``directory``), with its SQS client; with
    ``unique_keys``, a redriven job takes its unique key again. A peek's receive waits
    ``wait_seconds`` to come back empty."""

    def __init__(
        self,
        directory: QueueDirectory,
        clients: Clients,
        unique_keys: UniqueKeys | None,
        wait_seconds: int = 1,
    ) -> None:
        self.directory = directory
        self.clients = clients
        self.unique_keys = unique_keys
        self.wait_seconds = wait_seconds

    # -- the operations -----------------------------------------------------------------------

    def send(
        self, body: str, reason: str, *, queue: str | None = None, traceback: str | None = None
    ) -> bool:
        """Send ``body`` to the DLQ of ``queue`` (see
        :meth:`SQSQueueDriver.dead_letter <glasswork.jobs.SQSQueueDriver.dead_letter>`)."""
        name = self.directory.queue_name(queue or "default")
        dlq = self.directory.dead_letter_queue_url(name)
        if dlq is None:
            return False
        params: dict[str, Any] = {
            "QueueUrl": dlq,
            "MessageBody": body,
            "MessageAttributes": dead_letter_attributes(
                body, reason, name, self.directory.limit_of_url(dlq), traceback
            ),
        }
        if dlq.endswith(".fifo"):
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            params["MessageGroupId"] = fifo_id(_group_of(body) or "dead-letter")
            params["MessageDeduplicationId"] = digest
        self.clients.sqs.send_message(**params)
        return True

    def records(self, queue: str | None = None, limit: int = 100) -> list[DeadLetterRecord]:
        """Up to ``limit`` dead letters (of ``queue``'s DLQ, or of every queue's), oldest
        first, left in place."""
        dlqs = self._dlqs(queue)
        # A DLQ shared with queues not asked for is read whole, and only the asked
        # queues' letters are kept: its first `limit` messages may be other queues'.
        everyone = self._dlqs(None) if queue is not None else dlqs
        shared = {dlq for dlq, sources in dlqs.items() if set(everyone[dlq]) != set(sources)}
        records: list[DeadLetterRecord] = []
        for dlq, held in self._peek_each(list(dlqs), None if shared else limit).items():
            self._release(dlq, held)
            sources = dlqs[dlq]
            records.extend(
                record
                for record in (self._record(h, sources) for h in held)
                if dlq not in shared or record.queue in sources
            )
        records.sort(key=lambda r: r.failed_at or datetime.min.replace(tzinfo=UTC))
        return records[:limit]

    def redrive(self, ids: Sequence[str] | None = None, *, queue: str | None = None) -> int:
        """Move dead letters (``ids``, or all; of ``queue``'s DLQ or every queue's) back to
        their queues. Returns how many moved, or for an SQS move task how many it took on."""
        moved = 0
        for dlq, sources, held in self._select(ids, queue):
            if held is None:  # the whole DLQ: let SQS move it, where it can
                started = self._move_task(dlq, sources)
                if started is not None:
                    moved += started
                    continue
                held = self._peek(dlq, None)
            moved += self._send_back(dlq, sources, held)
        return moved

    def purge(self, ids: Sequence[str] | None = None, *, queue: str | None = None) -> int:
        """Delete dead letters (``ids``, or all; of ``queue``'s DLQ or every queue's). Returns
        how many (approximately, for a whole-DLQ ``PurgeQueue``)."""
        purged = 0
        for dlq, _sources, held in self._select(ids, queue):
            if held is None:
                depth = self.depth(dlq)
                try:
                    self.clients.sqs.purge_queue(QueueUrl=dlq)
                    purged += depth
                    continue
                except ClientError as exc:  # e.g. PurgeQueueInProgress: one a minute
                    logger.info("PurgeQueue refused (%s); deleting message by message", exc)
                held = self._peek(dlq, None)
            purged += self._delete(dlq, held)
        return purged

    def page(
        self, query: DeadLetterQuery, cursor: str | None = None, limit: int = 100
    ) -> DeadLetterPage:
        """The dead letters ``query`` matches among those peeked (up to :data:`SCAN_LIMIT`
        per DLQ), newest first, after ``cursor``; the page's note says what SQS allows."""
        query = self._named(query)
        dlqs = self._dlqs(query.queue)
        records: list[DeadLetterRecord] = []
        full = []
        for dlq, held in self._peek_each(list(dlqs), SCAN_LIMIT).items():
            self._release(dlq, held)
            if len(held) >= SCAN_LIMIT:
                full.append(dlq.rstrip("/").rsplit("/", 1)[-1])
            records.extend(self._record(h, dlqs[dlq]) for h in held)
        note = (
            "SQS cannot search or page a queue: these are the messages the dashboard peeked "
            f"at (up to {SCAN_LIMIT:,} per DLQ, received hidden and released at once), "
            "filtered, sorted by the time they reached the DLQ and grouped here."
        )
        if full:
            note += (
                f" {', '.join(full)} holds more than that: the rest are not listed, counted "
                "or grouped here, though an action on all matches reaches them."
            )
        return search(records, query, cursor, limit, note=note)

    def find(self, record_id: str) -> DeadLetterRecord | None:
        """The dead letter whose message id is ``record_id``, peeked for in every DLQ until
        found (None: none holds it)."""
        for dlq, sources in self._dlqs(None).items():
            held = self._peek(dlq, None, until=record_id)
            self._release(dlq, held)
            found = next((h for h in held if h.id == record_id), None)
            if found is not None:
                return self._record(found, sources)
        return None

    def redrive_matching(self, query: DeadLetterQuery) -> int:
        """Move every dead letter ``query`` matches back to its queue (as :meth:`redrive`
        moves ids); returns how many moved."""
        return sum(
            self._send_back(dlq, sources, held) for dlq, sources, held in self._matching(query)
        )

    def purge_matching(self, query: DeadLetterQuery) -> int:
        """Delete every dead letter ``query`` matches; returns how many."""
        return sum(self._delete(dlq, held) for dlq, _sources, held in self._matching(query))

    def depth(self, dlq: str) -> int:
        """Messages in a DLQ (visible and in flight), approximately."""
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=dlq,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        ).get("Attributes", {})
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    # -- which DLQs, which messages -----------------------------------------------------------

    def _dlqs(self, queue: str | None) -> dict[str, list[str]]:
        """DLQ URL → the configured queues it serves (of ``queue`` only, when given)."""
        names = (
            [self.directory.queue_name(queue)] if queue is not None else list(self.directory.urls)
        )
        found: dict[str, list[str]] = {}
        for name in names:
            dlq = self.directory.dead_letter_queue_url(name)
            if dlq is not None:
                found.setdefault(dlq, []).append(name)
        return found

    def _select(
        self, ids: Sequence[str] | None, queue: str | None
    ) -> Iterator[tuple[str, list[str], list[_Held] | None]]:
        """Each DLQ with its source queues and the messages to act on: None for all of it
        (the DLQ serves exactly the queues asked for), else the held messages. Unknown
        ``ids`` raise :class:`UnknownDeadLetterError` before anything changes."""
        dlqs = self._dlqs(queue)
        if ids is None:
            for dlq, sources in dlqs.items():
                shared = queue is not None and set(self._dlqs(None)[dlq]) != set(sources)
                yield dlq, sources, (self._peek_of(dlq, sources) if shared else None)
            return
        wanted = set(ids)
        chosen: dict[str, list[_Held]] = {}
        for dlq, held in self._peek_each(list(dlqs), None).items():
            sources = dlqs[dlq]
            keep = [h for h in held if h.id in wanted and self._source(h, sources) in sources]
            self._release(dlq, [h for h in held if h not in keep])
            chosen[dlq] = keep
        missing = wanted - {h.id for held in chosen.values() for h in held}
        if missing:
            for dlq, held in chosen.items():
                self._release(dlq, held)
            where = f"queue {queue!r}" if queue else "any queue"
            raise UnknownDeadLetterError(
                f"no dead letter with id {', '.join(sorted(missing))} in the DLQ of {where} "
                "(ids are SQS message ids, as `glasswork dlq list` shows them)"
            )
        for dlq, held in chosen.items():
            yield dlq, dlqs[dlq], held

    def _named(self, query: DeadLetterQuery) -> DeadLetterQuery:
        """``query`` with its queue as configured (it may name it by URL or ARN)."""
        if query.queue is None:
            return query
        return replace(query, queue=self.directory.queue_name(query.queue))

    def _matching(self, query: DeadLetterQuery) -> Iterator[tuple[str, list[str], list[_Held]]]:
        """Each DLQ with its source queues and the messages ``query`` matches, held (every
        message is peeked; the others are released)."""
        query = self._named(query)
        dlqs = self._dlqs(query.queue)
        for dlq, held in self._peek_each(list(dlqs), None).items():
            sources = dlqs[dlq]
            keep = []
            for h in held:
                record = self._record(h, sources)
                if query.matches(record, time_cursor(record)):
                    keep.append(h)
            kept = {h.id for h in keep}
            self._release(dlq, [h for h in held if h.id not in kept])
            yield dlq, sources, keep

    def _peek_of(self, dlq: str, sources: list[str]) -> list[_Held]:
        held = self._peek(dlq, None)
        keep = [h for h in held if self._source(h, sources) in sources]
        self._release(dlq, [h for h in held if h not in keep])
        return keep

    def _peek_each(self, dlqs: list[str], limit: int | None) -> dict[str, list[_Held]]:
        """:meth:`_peek` of each DLQ, side by side: each ends with a receive that waits
        ``wait_seconds`` to come back empty, which one after another would add up."""
        if len(dlqs) <= 1:
            return {dlq: self._peek(dlq, limit) for dlq in dlqs}
        with ThreadPoolExecutor(min(len(dlqs), MAX_PARALLEL_PEEKS)) as pool:
            return dict(zip(dlqs, pool.map(lambda dlq: self._peek(dlq, limit), dlqs), strict=True))

    def _peek(self, dlq: str, limit: int | None, *, until: str | None = None) -> list[_Held]:
        """Receive up to ``limit`` (None: all) messages of ``dlq``, hidden for
        :data:`PEEK_SECONDS`, until a receive comes back empty, or brings only messages
        received already (a read longer than PEEK_SECONDS went round), or (``until``) the
        message with that id arrived."""
        held: dict[str, _Held] = {}
        while limit is None or len(held) < limit:
            want = _BATCH if limit is None else min(_BATCH, limit - len(held))
            response = self.clients.sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=want,
                VisibilityTimeout=PEEK_SECONDS,
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["SentTimestamp", "DeadLetterQueueSourceArn"],
                MessageAttributeNames=["All"],
            )
            batch = [_Held(dlq, m) for m in response.get("Messages", [])]
            fresh = [h for h in batch if h.id not in held]
            # A message received again keeps only its newest receipt handle.
            held.update((h.id, h) for h in batch)
            if not fresh or any(h.id == until for h in batch):
                break
        return list(held.values())

    def _source(self, held: _Held, sources: list[str]) -> str:
        """The configured queue a dead letter came from."""
        for candidate in (
            held.attribute(SOURCE_QUEUE_ATTRIBUTE),
            held.message.get("Attributes", {}).get("DeadLetterQueueSourceArn"),
        ):
            if candidate:
                try:
                    return self.directory.queue_name(candidate)
                except GlassworkError:
                    pass
        return sources[0]

    def _record(self, held: _Held, sources: list[str]) -> DeadLetterRecord:
        job_name, job_id, _ = identify(held.body)
        sent = held.message.get("Attributes", {}).get("SentTimestamp")
        return DeadLetterRecord(
            id=held.id,
            queue=self._source(held, sources),
            job_name=job_name,
            job_id=job_id,
            body=held.body,
            reason=held.attribute(REASON_ATTRIBUTE)
            or "no reason recorded (moved by the queue's redrive policy)",
            failed_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None,
            traceback=held.attribute(TRACEBACK_ATTRIBUTE),
        )

    # -- acting -------------------------------------------------------------------------------

    def _move_task(self, dlq: str, sources: list[str]) -> int | None:
        """Start SQS's own move of the whole DLQ to its one source queue; None when that is
        not possible here (several sources, unique keys to take again, or SQS refuses)."""
        if len(sources) != 1 or self.unique_keys is not None:
            return None
        depth = self.depth(dlq)
        try:
            client = _admin_client(self.clients.sqs)
            client.start_message_move_task(
                SourceArn=self._arn(dlq), DestinationArn=self._arn(self.directory.urls[sources[0]])
            )
        except (ClientError, BotoCoreError) as exc:
            logger.info("StartMessageMoveTask unavailable for %s (%s); moving in batches", dlq, exc)
            return None
        return depth

    def _arn(self, url: str) -> str:
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )
        return str(attributes["Attributes"]["QueueArn"])

    def _send_back(self, dlq: str, sources: list[str], held: list[_Held]) -> int:
        """Send held messages back to their queues, then delete them from the DLQ."""
        by_queue: dict[str, list[_Held]] = {}
        for h in held:
            by_queue.setdefault(self._source(h, sources), []).append(h)
        sent: list[_Held] = []
        for queue, items in by_queue.items():
            items = self._take_unique_keys(dlq, items)
            url = self.directory.urls[queue]
            for start in range(0, len(items), _BATCH):
                chunk = items[start : start + _BATCH]
                entries = [{"Id": str(i), **_resend_params(url, h)} for i, h in enumerate(chunk)]
                response = self.clients.sqs.send_message_batch(QueueUrl=url, Entries=entries)
                ok = {int(e["Id"]) for e in response.get("Successful", [])}
                sent.extend(h for i, h in enumerate(chunk) if i in ok)
                if len(ok) < len(chunk):
                    logger.warning(
                        "SQS did not take %d redriven message(s) for %s; they stay in the DLQ: %s",
                        len(chunk) - len(ok),
                        url,
                        response.get("Failed"),
                    )
                    self._release(dlq, [h for i, h in enumerate(chunk) if i not in ok])
        return self._delete(dlq, sent)

    def _take_unique_keys(self, dlq: str, held: list[_Held]) -> list[_Held]:
        keys = self.unique_keys
        if keys is None:
            return held
        free: list[_Held] = []
        for h in held:
            try:
                keys.claim([JobMessage.from_json(h.body)], 0.0)
            except DuplicateJobError as exc:
                logger.warning("dead letter %s stays in the DLQ: %s", h.id, exc)
                self._release(dlq, [h])
                continue
            except GlassworkError:
                pass  # a malformed body has no key to take
            free.append(h)
        return free

    def _delete(self, dlq: str, held: list[_Held]) -> int:
        deleted = 0
        for start in range(0, len(held), _BATCH):
            chunk = held[start : start + _BATCH]
            response = self.clients.sqs.delete_message_batch(
                QueueUrl=dlq,
                Entries=[{"Id": str(i), "ReceiptHandle": h.receipt} for i, h in enumerate(chunk)],
            )
            deleted += len(response.get("Successful", []))
        return deleted

    def _release(self, dlq: str, held: list[_Held]) -> None:
        """Make peeked messages visible again at once."""
        for start in range(0, len(held), _BATCH):
            chunk = held[start : start + _BATCH]
            self.clients.sqs.change_message_visibility_batch(
                QueueUrl=dlq,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h.receipt, "VisibilityTimeout": 0}
                    for i, h in enumerate(chunk)
                ],
            )


def _resend_params(url: str, held: _Held) -> dict[str, Any]:
    params: dict[str, Any] = {"MessageBody": held.body}
    if url.endswith(".fifo"):
        group = _group(held.body) or "redrive"
        params["MessageGroupId"] = fifo_id(group)
        # A fresh id: a redrive within 5 minutes of the first send must not be dropped.
        params["MessageDeduplicationId"] = hashlib.sha256(f"redrive:{held.id}".encode()).hexdigest()
    elif (tenant := fairness_of(held.body)) is not None:
        params["MessageGroupId"] = fifo_id(tenant)  # back in its tenant's share of a fair queue
    return params


def _admin_client(client: Any) -> Any:
    """An SQS client like ``client`` that does not retry: an endpoint without
    StartMessageMoveTask answers 500, which must not cost five attempts."""
    return boto3.client(
        "sqs",
        region_name=client.meta.region_name,
        endpoint_url=client.meta.endpoint_url,
        config=_NO_RETRIES,
    )


def _group(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    group = data.get("groupId") or data.get("jobName")
    return group if isinstance(group, str) else None


def _group_of(body: str) -> str | None:
    """The FIFO group of a dead letter's job (None: the body is no job)."""
    try:
        message = JobMessage.from_json(body)
    except MalformedMessageError:
        return None
    return message.group_id or message.job_name
