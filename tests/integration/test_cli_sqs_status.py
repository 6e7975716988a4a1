"""`glasswork status`, `cancel` and `history` on SQS (moto): through the DynamoDB status
table named by the URL's ``status_table=``, and without one, a one-line usage error saying
how to add it."""

from __future__ import annotations

import json

import pytest

from glasswork.jobs import JobMessage
from glasswork.jobs.drivers.records import FinalStatus
from glasswork.jobs.drivers.sqs import SQSQueueDriver, create_status_table

from .conftest import REGION, Aws
from .test_sqs_operations import run, sqs_url
from .test_sqs_status import receive_one

STATUS = "cli-job-status"


def test_status_history_and_cancel_read_the_status_table(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    create_status_table(STATUS, client=aws.dynamodb)
    queue = aws.create_queue("jobs")
    driver = SQSQueueDriver(
        region=REGION, queues={"default": queue}, endpoint_url=aws.endpoint, status_table=STATUS
    )
    url = sqs_url(aws, {"default": queue}, status_table=STATUS)
    ran, waiting = JobMessage.create("report", {"n": 1}), JobMessage.create("report", {"n": 2})
    driver.enqueue(ran)
    driver.finish(receive_one(driver), FinalStatus("done", result={"rows": 7}))
    driver.enqueue(waiting)

    code, out, _ = run(capsys, "status", ran.job_id, "--driver", url, "--json")
    assert code == 0
    assert {k: json.loads(out)[k] for k in ("state", "result")} == {
        "state": "done",
        "result": {"rows": 7},
    }
    code, out, _ = run(capsys, "history", "--driver", url, "--json")
    assert code == 0
    assert {s["job_id"]: s["state"] for s in json.loads(out)} == {
        ran.job_id: "done",
        waiting.job_id: "pending",
    }
    code, out, _ = run(capsys, "cancel", waiting.job_id, "--driver", url)
    assert (code, out) == (0, f"cancelled job {waiting.job_id}: it will not run\n")
    assert driver.job_status(waiting.job_id).state == "cancelled"  # type: ignore[union-attr]
    code, _, err = run(capsys, "cancel", ran.job_id, "--driver", url)
    assert code == 1 and "has already ended (done)" in err


@pytest.mark.parametrize("argv", [["status", "some-job"], ["cancel", "some-job"], ["history"]])
def test_without_a_status_table_each_says_how_to_add_one(
    aws: Aws, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    url = sqs_url(aws, {"default": aws.create_queue("jobs")})
    code, out, err = run(capsys, *argv, "--driver", url)
    assert (code, out) == (2, "")
    assert err.startswith(f"glasswork {argv[0]}: error: ") and err.count("\n") == 1
    assert "status_table" in err and "create_status_table" in err
