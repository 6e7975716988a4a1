"""Limited jobs that record every run (key, pid, attempt, start, finish) as
:mod:`fixtures_app.app`'s do: a rate-limited one and a per-tenant concurrency-limited one."""

from __future__ import annotations

from typing import Any

from glasswork import define_module
from glasswork.jobs import define_job

from .app import _record


def _handler(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, float(payload.get("sleep", 0)), payload.get("until"))


paced = define_job(name="paced", handler=_handler, rate_limit="10/s")
per_tenant = define_job(
    name="per_tenant",
    handler=_handler,
    concurrency_limit=2,
    concurrency_key=lambda p: p["tenant"],
)

LimitedModule = define_module(name="limited", jobs=[paced, per_tenant])
