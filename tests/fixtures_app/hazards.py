"""Jobs that misbehave on purpose, recording their runs like ``fixtures_app.app``'s: a sync
handler that hangs past its timeout, handlers that raise ``BaseException`` s, and an
``async def`` handler that blocks the event loop with ``time.sleep``."""

from __future__ import annotations

import asyncio
from typing import Any

from glasswork import define_module
from glasswork.jobs import define_job

from .app import _record, record


def base_exception(kind: str) -> BaseException:
    """The ``BaseException`` named ``kind``, as a handler would raise it."""
    made: dict[str, BaseException] = {
        "SystemExit": SystemExit(3),
        "KeyboardInterrupt": KeyboardInterrupt(),
        "GeneratorExit": GeneratorExit(),
        "CancelledError": asyncio.CancelledError(),
    }
    return made[kind]


def _hang(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, float(payload.get("sleep", 30)))


def _explode(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, 0)
    raise base_exception(payload["kind"])


async def _explode_async(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, 0)
    raise base_exception(payload["kind"])


async def _block(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, float(payload.get("sleep", 30)))  # blocks the loop


#: Times out after 0.5 s; a retry waits a minute, so a test sees the first timeout settle.
hang = define_job(name="hang", handler=_hang, timeout=0.5, retry={"max_attempts": 2, "backoff": 60})
explode = define_job(
    name="explode", handler=_explode, retry={"max_attempts": 2, "backoff": 0, "jitter": False}
)
explode_async = define_job(
    name="explode-async",
    handler=_explode_async,
    retry={"max_attempts": 2, "backoff": 0, "jitter": False},
)
block = define_job(name="block", handler=_block)

HazardModule = define_module(name="hazards", jobs=[hang, explode, explode_async, block, record])
