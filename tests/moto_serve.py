"""``python tests/moto_serve.py -H HOST -p PORT``: moto's server, with each DynamoDB request
handled whole under one lock.

DynamoDB applies a conditional write atomically (the condition and the write see no other
write between them); moto's threaded server does not: two requests on two threads can both
pass a condition and both write. Tests of code that relies on conditional writes (unique
keys, the limits table, debounce) would see races real DynamoDB never has. SQS requests are
left concurrent (a long poll must not hold up the others)."""

from __future__ import annotations

import threading
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _atomic_call_action(self: DynamoHandler) -> Any:
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _atomic_call_action  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
