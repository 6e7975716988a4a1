"""The SQS driver: queues on SQS, delays past SQS's 15 minutes in a DynamoDB table that a
scheduler dispatches, unique keys in another.

One collaborator per module: :mod:`.driver` (configuration and where each enqueue goes),
:mod:`.sending` (batches), :mod:`.consuming` (receive, ack, nack, leases),
:mod:`.dead_letters` (DLQs), :mod:`.unique` (the unique-key table), :mod:`.fifo`,
:mod:`.lookup` (finding a job), :mod:`.problems` (AWS setup mistakes as what to fix),
:mod:`.scheduler` (the DynamoDB delay table and its handler), :mod:`.status` (the
DynamoDB status table: a job's life, cancellation), :mod:`.job_items` (its items and
requests) and :mod:`.history` (reading it back),
:mod:`.limits` (the DynamoDB limits table), :mod:`.flow` (flow limits: taking a limited
job's start and slot, putting it back unspent) and :mod:`.attempts` (the attempts a copy
carries), :mod:`.async_enqueuer` (aiobotocore). Loaded on first use, so that boto3 is
imported only by code that sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...extras import load_lazily

if TYPE_CHECKING:
    from .driver import SQSQueueDriver
    from .limits import create_limits_table
    from .scheduler import (
        TABLE_SHARDS,
        create_scheduler_handler,
        create_scheduler_table,
        run_scheduler,
    )
    from .status import create_status_table

__all__ = [
    "TABLE_SHARDS",
    "SQSQueueDriver",
    "create_limits_table",
    "create_scheduler_handler",
    "create_scheduler_table",
    "create_status_table",
    "run_scheduler",
]

_LAZY = {
    "SQSQueueDriver": ".driver",
    "TABLE_SHARDS": ".scheduler",
    "create_scheduler_handler": ".scheduler",
    "create_scheduler_table": ".scheduler",
    "create_limits_table": ".limits",
    "create_status_table": ".status",
    "run_scheduler": ".scheduler",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)
