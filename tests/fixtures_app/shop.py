"""A small shop app for the dashboard tests: jobs with every setting the jobs page shows,
and handlers whose outcomes are known (``fail_times`` transient failures, then done; a
``charge-card`` with ``"decline": true`` fails permanently)."""

from __future__ import annotations

from typing import Any

from glasswork import define_module
from glasswork.jobs import PermanentJobError, TransientJobError, define_job, define_periodic_job


def _send_receipt(payload: dict[str, Any], ctx: Any) -> None:
    if ctx.attempt <= int(payload.get("fail_times", 0)):
        raise TransientJobError(f"mail server busy (attempt {ctx.attempt})")


def _charge_card(payload: dict[str, Any], ctx: Any) -> None:
    if payload.get("decline"):
        raise PermanentJobError(f"card declined: {payload.get('note', '')}")


send_receipt = define_job(
    name="send-receipt",
    handler=_send_receipt,
    queue="emails",
    unique=lambda p: p.get("order_id"),
    retry={"max_attempts": 5, "backoff": 0.01, "jitter": False},
    timeout="30s",
)
charge_card = define_job(name="charge-card", handler=_charge_card, queue="payments")
resize_image = define_job(
    name="resize-image", handler=lambda payload, ctx: None, queue="media", retry=False
)
nightly_report = define_periodic_job(
    name="nightly-report", handler=lambda payload, ctx: None, schedule="cron(0 3 * * ? *)"
)
heartbeat = define_periodic_job(
    name="heartbeat", handler=lambda payload, ctx: None, schedule="rate(5 minutes)"
)
sync_crm = define_periodic_job(name="sync-crm", handler=lambda payload, ctx: None)

ShopModule = define_module(
    name="shop",
    jobs=[send_receipt, charge_card, resize_image, nightly_report, heartbeat, sync_crm],
)
