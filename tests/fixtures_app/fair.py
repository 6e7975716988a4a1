"""A job claimed round-robin across tenants that records every run (key, pid, attempt,
start, finish) as :mod:`fixtures_app.app`'s jobs do."""

from __future__ import annotations

from typing import Any

from glasswork import define_module
from glasswork.jobs import define_job

from .app import _record


def _handler(payload: dict[str, Any], ctx: Any) -> None:
    _record(payload["key"], ctx.attempt, float(payload.get("sleep", 0)))


per_tenant = define_job(
    name="fair_per_tenant", handler=_handler, fairness_key=lambda p: p.get("tenant")
)

FairModule = define_module(name="fair", jobs=[per_tenant])
