"""ApiFunction: an HTTP endpoint that enqueues a job now and another in three days."""

from __future__ import annotations

import json
from typing import Any

from jobs import make_driver, send_reminder, send_welcome

from glasswork.jobs import JobService

jobs = JobService(make_driver())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    user_id = (event.get("pathParameters") or {}).get("user_id", "")
    # Request input, validated against the job's schema here: the explicit untyped path.
    now = jobs.enqueue_raw(send_welcome, {"user_id": user_id})
    # Over 15 minutes: stored in the scheduler table, sent to SQS when due.
    jobs.enqueue_raw(send_reminder, {"user_id": user_id}, delay="3d")
    return {"statusCode": 202, "body": json.dumps({"jobId": now.job_id})}
