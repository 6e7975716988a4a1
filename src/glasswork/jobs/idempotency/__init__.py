"""Idempotent jobs: run a job's effect once, however often its message is delivered.

``define_job(..., idempotent=True)`` keys runs on the job id;
``idempotent=Idempotency(store=..., key=..., expires=...)`` picks the store, keys on the
payload and sets how long a completed key is remembered. Stores: :class:`MemoryIdempotencyStore`,
:class:`SQLiteIdempotencyStore`, :class:`DynamoDBIdempotencyStore` (boto3, loaded on use;
:func:`create_idempotency_table` makes its table); :class:`IdempotencyStore` for a store of
your own. ``Idempotency`` is also exported by ``glasswork.jobs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..extras import load_lazily
from .options import DEFAULT_EXPIRES, Idempotency, idempotency_key
from .store import COMPLETED, IN_PROGRESS, IdempotencyRecord, IdempotencyStore

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .dynamodb import DynamoDBIdempotencyStore, create_idempotency_table
    from .memory import MemoryIdempotencyStore
    from .sqlite import SQLiteIdempotencyStore
    from .step import Duplicate, IdempotencyStep, idempotency_step

# The step imports the executor, which imports job definitions, which import this package:
# it and the stores load on first use (a worker needs a store only when it is given one).
_LAZY = {
    "MemoryIdempotencyStore": ".memory",
    "Duplicate": ".step",
    "IdempotencyStep": ".step",
    "idempotency_step": ".step",
    "SQLiteIdempotencyStore": ".sqlite",
    "DynamoDBIdempotencyStore": ".dynamodb",
    "create_idempotency_table": ".dynamodb",
}


def __getattr__(name: str) -> Any:
    return load_lazily(__name__, _LAZY, name)


__all__ = [
    "COMPLETED",
    "DEFAULT_EXPIRES",
    "IN_PROGRESS",
    "Duplicate",
    "DynamoDBIdempotencyStore",
    "Idempotency",
    "IdempotencyRecord",
    "IdempotencyStep",
    "IdempotencyStore",
    "MemoryIdempotencyStore",
    "SQLiteIdempotencyStore",
    "create_idempotency_table",
    "idempotency_key",
    "idempotency_step",
]
