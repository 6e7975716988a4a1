"""FIFO message group and deduplication ids, as SQS accepts them."""

from __future__ import annotations

import hashlib
import re

from ...message import JobMessage, scoped_key

# FIFO group and deduplication ids: 1-128 printable ASCII characters, no spaces.
_FIFO_ID = re.compile(r"[!-~]{1,128}")


def fifo_id(value: str) -> str:
    """``value`` as a FIFO group or deduplication id: kept when SQS accepts it (1-128
    printable ASCII characters), else its SHA-256, so equal values still map together."""
    if _FIFO_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def deduplication_id(message: JobMessage, *, by_unique_key: bool = True) -> str:
    """The FIFO deduplication id: ``<job name>:<unique key>`` (length-prefixed when the name
    holds ``:``, see :func:`~glasswork.jobs.message.scoped_key`) for jobs with a unique key (so
    SQS drops a repeat within its 5-minute window), else the job id. With
    ``by_unique_key=False`` (the driver guards keys in DynamoDB) always the job id, so a job
    enqueued again after the first finished is not dropped."""
    if by_unique_key and message.unique_key is not None:
        return fifo_id(scoped_key(message.job_name, message.unique_key, ":"))
    return fifo_id(message.job_id)
