"""SQS operations against a moto server: each queue's size limit, dead letters that always
fit, stats in the shared schema, the DLQ from the command line, unique keys in DynamoDB."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from glasswork import define_module
from glasswork.cli import main
from glasswork.jobs import (
    BatchRetryError,
    DuplicateJobError,
    JobMessage,
    JobService,
    PayloadTooLargeError,
    bootstrap_worker,
    define_job,
)
from glasswork.jobs.drivers import QueueStats
from glasswork.jobs.drivers.sqs import SQSQueueDriver
from glasswork.jobs.drivers.sqs.dead_letters import dead_letter_attributes
from glasswork.jobs.drivers.sqs.scheduler import create_scheduler_table
from glasswork.jobs.testing import sqs_record

from .conftest import REGION, Aws


class Text(BaseModel):
    text: str


class Signup(BaseModel):
    user_id: str


echo = define_job(name="echo", schema=Text, handler=lambda p: None)
signup_runs: list[str] = []


def _signup(payload: Signup) -> None:
    if payload.user_id.startswith("flaky") and signup_runs.count(payload.user_id) == 0:
        signup_runs.append(payload.user_id)
        raise RuntimeError("try again")
    signup_runs.append(payload.user_id)


signup = define_job(
    name="signup",
    schema=Signup,
    unique=lambda p: p.user_id,
    retry={"max_attempts": 3, "backoff": 0},
    handler=_signup,
)


def driver_for(aws: Aws, queues: dict[str, str], **options: Any) -> SQSQueueDriver:
    return SQSQueueDriver(region=REGION, queues=queues, endpoint_url=aws.endpoint, **options)


def set_limit(aws: Aws, url: str, limit: int) -> None:
    aws.sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": str(limit)})


# -- message size -------------------------------------------------------------------------


def test_each_queue_has_its_own_size_limit_read_once(aws: Aws) -> None:
    small, large = aws.create_queue("small"), aws.create_queue("large")  # new queues: 1 MiB
    set_limit(aws, small, 2048)
    driver = driver_for(aws, {"default": small, "large": large})
    assert (driver.message_limit("default"), driver.message_limit("large")) == (2048, 1_048_576)
    service = JobService(driver)

    service.enqueue(echo, Text(text="x" * 1500))
    with pytest.raises(PayloadTooLargeError, match="2,048-byte limit"):
        service.enqueue(echo, Text(text="x" * 2100))
    big = define_job(name="big", queue="large", schema=Text, handler=lambda p: None)
    service.enqueue(big, Text(text="x" * 600_000))  # over 256 KiB, within this queue's 1 MiB
    [message] = aws.drain(large, wait=1, expected=1)
    assert len(message["Body"]) > 600_000
    with pytest.raises(PayloadTooLargeError, match="1,048,576-byte limit"):
        service.enqueue(big, Text(text="x" * 1_048_576))


def test_size_limit_is_262144_when_the_queue_cannot_be_read(aws: Aws) -> None:
    gone = f"{aws.endpoint}/123456789012/no-such-queue"
    assert driver_for(aws, {"default": gone}).message_limit("default") == 262_144


def test_a_message_at_the_limit_can_always_be_dead_lettered(aws: Aws) -> None:
    dlq = aws.create_queue("jobs-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    set_limit(aws, url, 4096)
    set_limit(aws, dlq, 4096)
    driver = driver_for(aws, {"default": url})
    message = JobService(driver).build_message(echo, Text(text=""))
    pad = 4096 - len(message.encode())
    full = JobService(driver).build_message(echo, Text(text="x" * pad))
    assert len(full.encode()) == 4096
    near = JobService(driver).build_message(echo, Text(text="x" * (pad - 100)))

    assert driver.dead_letter(full.encode(), "PermanentJobError: " + "why " * 500, queue="default")
    assert driver.dead_letter(near.encode(), "PermanentJobError: " + "why " * 500, queue="default")

    first, second = aws.drain(dlq, wait=1, expected=2)
    assert first.get("MessageAttributes", {}) == {}  # no room left: sent without attributes
    kept = second["MessageAttributes"]
    assert kept["GlassworkSourceQueue"]["StringValue"] == "default"
    reason = kept["GlassworkReason"]["StringValue"]
    assert reason.startswith("PermanentJobError: why") and len(reason) < 100


def test_dead_letter_attributes_count_names_types_and_values() -> None:
    body = "x" * 1000
    attributes = dead_letter_attributes(body, "é" * 100, "default", 1100)
    size = len(body) + sum(
        len(name) + len("String") + len(a["StringValue"].encode()) for name, a in attributes.items()
    )
    assert size <= 1100
    assert attributes["GlassworkReason"]["StringValue"].startswith("é")


# -- stats and the command line -------------------------------------------------------------


def sqs_url(aws: Aws, queues: dict[str, str], **options: str) -> str:
    query = "&".join(
        [f"queue.{name}={url}" for name, url in queues.items()]
        + [f"endpoint_url={aws.endpoint}", f"region={REGION}"]
        + [f"{k}={v}" for k, v in options.items()]
    )
    return f"sqs://?{query}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dead(aws: Aws) -> tuple[SQSQueueDriver, str, str, str]:
    """Queues ``default`` and ``emails`` sharing no DLQ, with three dead letters on
    ``default``'s DLQ and one on ``emails``'s."""
    dlq, emails_dlq = aws.create_queue("jobs-dlq"), aws.create_queue("emails-dlq")
    url = aws.create_queue("jobs", dead_letter=dlq)
    emails = aws.create_queue("emails", dead_letter=emails_dlq)
    driver = driver_for(aws, {"default": url, "emails": emails})
    for n in range(3):
        body = JobMessage.create("echo", {"text": str(n)}).encode()
        driver.dead_letter(body, f"PermanentJobError: number {n}", queue="default")
    driver.dead_letter("{not json", "MalformedMessageError: no", queue="emails")
    return driver, url, emails, sqs_url(aws, {"default": url, "emails": emails})


def test_stats_give_ready_delayed_in_flight_and_dlq_depth(
    aws: Aws, dead: tuple[SQSQueueDriver, str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    driver, _, _, cli_url = dead
    service = JobService(driver)
    service.enqueue(echo, Text(text="now"))
    service.enqueue(echo, Text(text="held"))
    service.enqueue_in(echo, Text(text="later"), "5m")
    assert len(driver.receive(["default"], max_messages=1, wait_seconds=1)) == 1

    stats = driver.stats()
    assert stats["default"] == QueueStats("default", ready=1, delayed=1, in_flight=1, dead=3)
    assert stats["emails"] == QueueStats("emails", dead=1)
    code, out, _ = run(capsys, "stats", "--driver", cli_url, "--json")
    assert json.loads(out)["default"] == {"ready": 1, "delayed": 1, "in_flight": 1, "dead": 3}
    code, out, _ = run(capsys, "stats", "--driver", cli_url)
    assert code == 0
    assert out.splitlines()[1].split() == ["default", "1", "1", "1", "3"]


def test_dlq_list_peeks_without_consuming(
    dead: tuple[SQSQueueDriver, str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    driver, _, _, cli_url = dead
    code, out, _ = run(capsys, "dlq", "list", "--driver", cli_url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "QUEUE", "JOB", "JOB", "ID", "AGE", "RAISED", "AT", "REASON"]
    assert len(lines) == 5
    assert sum("PermanentJobError: number" in line for line in lines) == 3
    assert any(line.split()[1:3] == ["emails", "?"] for line in lines)
    records = json.loads(run(capsys, "dlq", "list", "--driver", cli_url, "--json")[1])
    assert len(records) == 4  # still there: the first list only peeked
    assert {r["queue"] for r in records} == {"default", "emails"}
    assert all(r["age"].endswith("s") for r in records)
    only = json.loads(
        run(capsys, "dlq", "list", "--queue", "emails", "--json", "--driver", cli_url)[1]
    )
    assert [r["reason"] for r in only] == ["MalformedMessageError: no"]
    assert driver.stats()["default"].dead == 3


def test_dlq_list_of_one_queue_leaves_out_the_others_on_a_shared_dlq(aws: Aws) -> None:
    dlq = aws.create_queue("shared-dlq")
    urls = {q: aws.create_queue(q, dead_letter=dlq) for q in ("orders", "emails")}
    driver = driver_for(aws, urls)
    for n in range(3):
        driver.dead_letter(
            JobMessage.create("echo", {"text": f"e{n}"}).encode(), "e", queue="emails"
        )
    driver.dead_letter(JobMessage.create("echo", {"text": "o"}).encode(), "o", queue="orders")

    orders = driver.dead_letters(queue="orders", limit=1)
    assert [(r.queue, r.reason) for r in orders] == [("orders", "o")]
    assert {r.queue for r in driver.dead_letters(queue="emails")} == {"emails"}
    assert len(driver.dead_letters(queue="emails")) == 3
    assert len(driver.dead_letters()) == 4


def test_dlq_redrive_by_id_and_all_moves_messages_back(
    aws: Aws, dead: tuple[SQSQueueDriver, str, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    driver, url, _, cli_url = dead
    records = driver.dead_letters(queue="default")
    first = records[0]
    code, out, _ = run(capsys, "dlq", "redrive", "--id", first.id, "--driver", cli_url)
    assert (code, out) == (0, "redrove 1 dead letter(s)\n")
    [back] = aws.drain(url, wait=1, expected=1)
    assert back["Body"] == first.body

    # moto has no StartMessageMoveTask: the whole-DLQ redrive falls back to batches.
    code, out, _ = run(capsys, "dlq", "redrive", "--all", "--queue", "default", "--driver", cli_url)
    assert (code, out) == (0, "redrove 2 dead letter(s)\n")
    assert len(aws.drain(url, wait=1, expected=2)) == 2
    assert driver.stats()["default"].dead == 0
    assert driver.stats()["emails"].dead == 1  # another queue's DLQ is left alone


def test_dlq_purge_asks_and_unknown_ids_or_queues_are_errors(
    aws: Aws,
    dead: tuple[SQSQueueDriver, str, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver, _, _, cli_url = dead
    code, _, err = run(capsys, "dlq", "redrive", "--id", "no-such-id", "--driver", cli_url)
    assert code == 1 and "unknown dead letter id(s) no-such-id" in err
    code, _, err = run(capsys, "dlq", "list", "--queue", "nope", "--driver", cli_url)
    assert code == 1 and "unknown queue 'nope'" in err

    monkeypatch.setattr("sys.stdin", _Input("n\n"))
    code, _, err = run(capsys, "dlq", "purge", "--all", "--queue", "default", "--driver", cli_url)
    assert code == 1 and "Purge every dead letter of queue 'default' for good?" in err
    assert driver.stats()["default"].dead == 3

    victim = driver.dead_letters(queue="default")[0].id
    monkeypatch.setattr("sys.stdin", _Input("y\n"))
    code, out, _ = run(capsys, "dlq", "purge", "--id", victim, "--driver", cli_url)
    assert (code, out) == (0, "purged 1 dead letter(s)\n")
    code, out, _ = run(capsys, "dlq", "purge", "--all", "--yes", "--driver", cli_url)
    assert code == 0
    assert driver.stats()["default"].dead == driver.stats()["emails"].dead == 0


class _Input:
    def __init__(self, text: str) -> None:
        self.lines = iter(text.splitlines(keepends=True))

    def readline(self) -> str:
        return next(self.lines, "")


# -- unique keys ----------------------------------------------------------------------------


@pytest.fixture
def unique(aws: Aws) -> tuple[SQSQueueDriver, str]:
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    url = aws.create_queue("jobs")
    signup_runs.clear()
    return driver_for(aws, {"default": url}, unique_table="scheduled-jobs"), url


def run_lambda(driver: SQSQueueDriver, url: str) -> dict[str, Any]:
    handler = bootstrap_worker(module=define_module(name="app", jobs=[signup]), driver=driver)
    received = driver.receive(wait_seconds=1)
    event = {"Records": [sqs_record(r.body, message_id=r.message_id) for r in received]}
    try:
        response = handler(event, None)
    except BatchRetryError as returned:  # every record to retry: Lambda returns the batch
        response = {"batchItemFailures": [{"itemIdentifier": i} for i in returned.retried]}
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    for r in received:
        if r.message_id not in failed:
            driver.ack(r)
        else:
            driver.nack(r, 0)
    return response


def test_unique_key_holds_until_the_job_finishes(unique: tuple[SQSQueueDriver, str]) -> None:
    driver, url = unique
    service = JobService(driver)
    first = service.enqueue(signup, Signup(user_id="u1"))
    with pytest.raises(DuplicateJobError) as refused:
        service.enqueue(signup, Signup(user_id="u1"))
    assert refused.value.existing_job_id == first.job_id
    with pytest.raises(DuplicateJobError):
        service.enqueue_in(signup, Signup(user_id="u1"), "20m")  # via the table: same key

    assert run_lambda(driver, url) == {"batchItemFailures": []}
    assert signup_runs == ["u1"]
    service.enqueue(signup, Signup(user_id="u1"))  # released when the job was done


def test_a_job_to_retry_keeps_its_key(unique: tuple[SQSQueueDriver, str]) -> None:
    driver, url = unique
    service = JobService(driver)
    service.enqueue(signup, Signup(user_id="flaky-1"))
    assert len(run_lambda(driver, url)["batchItemFailures"]) == 1
    with pytest.raises(DuplicateJobError):
        service.enqueue(signup, Signup(user_id="flaky-1"))
    assert run_lambda(driver, url) == {"batchItemFailures": []}
    service.enqueue(signup, Signup(user_id="flaky-1"))


def test_a_batch_with_a_held_key_sends_nothing(
    aws: Aws, unique: tuple[SQSQueueDriver, str]
) -> None:
    driver, url = unique
    service = JobService(driver)
    service.enqueue(signup, Signup(user_id="held"))
    with pytest.raises(DuplicateJobError):
        service.enqueue_many(signup, [Signup(user_id="a"), Signup(user_id="held")])
    assert len(aws.drain(url, wait=1)) == 1  # only the first job
    service.enqueue_many(signup, [Signup(user_id="a"), Signup(user_id="b")])  # "a" was freed


def test_unique_keys_lapse_after_their_expiry(aws: Aws, unique: tuple[SQSQueueDriver, str]) -> None:
    _, url = unique
    lapsing = driver_for(
        aws, {"default": url}, unique_table="scheduled-jobs", unique_ttl=timedelta(seconds=-5)
    )
    JobService(lapsing).enqueue(signup, Signup(user_id="u1"))
    JobService(lapsing).enqueue(signup, Signup(user_id="u1"))  # the first key has lapsed
    assert len(aws.drain(url, wait=1, expected=2)) == 2


def test_unique_keys_of_jobs_whose_names_and_keys_run_together_are_apart(
    aws: Aws, unique: tuple[SQSQueueDriver, str]
) -> None:
    driver, url = unique
    refund = define_job(name="refund", handler=lambda p: None, unique=lambda p: p["order"])
    partial = define_job(name="refund#partial", handler=lambda p: None, unique=lambda p: p["order"])
    service = JobService(driver)
    service.enqueue(refund, {"order": "partial#o-17"})
    service.enqueue(partial, {"order": "o-17"})  # "refund#partial#o-17" both, joined with "#"
    with pytest.raises(DuplicateJobError):
        service.enqueue(partial, {"order": "o-17"})
    assert len(aws.drain(url, wait=1, expected=2)) == 2


def test_fifo_deduplicates_jobs_whose_names_and_keys_run_together_apart(aws: Aws) -> None:
    url = aws.create_queue("jobs.fifo")
    driver = driver_for(aws, {"default": url})
    refund = define_job(name="refund", handler=lambda p: None, unique=lambda p: p["order"])
    partial = define_job(name="refund:partial", handler=lambda p: None, unique=lambda p: p["order"])
    JobService(driver).enqueue(refund, {"order": "partial:o-17"})
    JobService(driver).enqueue(partial, {"order": "o-17"})  # not a repeat: SQS keeps both
    messages = aws.drain(url, wait=1, expected=2)
    assert sorted(m["Attributes"]["MessageDeduplicationId"] for m in messages) == [
        ":14:refund:partial:o-17",
        "refund:partial:o-17",
    ]


def test_fifo_with_unique_table_raises_and_redelivers_after_release(aws: Aws) -> None:
    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    url = aws.create_queue("jobs.fifo")
    driver = driver_for(aws, {"default": url}, unique_table="scheduled-jobs")
    service = JobService(driver)
    service.enqueue(signup, Signup(user_id="u1"))
    with pytest.raises(DuplicateJobError):
        service.enqueue(signup, Signup(user_id="u1"))
    signup_runs.clear()
    assert run_lambda(driver, url) == {"batchItemFailures": []}
    # Within SQS's 5-minute deduplication window: not dropped, since the id is the job id.
    service.enqueue(signup, Signup(user_id="u1"))
    assert len(aws.drain(url, wait=1, expected=1)) == 1


def test_without_unique_table_the_driver_warns_once(
    aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    driver = driver_for(aws, {"default": aws.create_queue("jobs")})
    JobService(driver).enqueue(signup, Signup(user_id="u1"))
    JobService(driver).enqueue(signup, Signup(user_id="u1"))  # SQS keeps no keys
    warnings = [r for r in caplog.records if "unique_table" in r.getMessage()]
    assert len(warnings) == 1


def test_discarded_jobs_and_the_long_running_worker_release_keys_too(
    unique: tuple[SQSQueueDriver, str],
) -> None:
    from glasswork.jobs import Worker

    driver, _ = unique

    def fail(payload: Signup) -> None:
        raise RuntimeError("no retries for this one")

    once = define_job(
        name="once", schema=Signup, unique=lambda p: p.user_id, retry=False, handler=fail
    )
    service = JobService(driver)
    service.enqueue(once, Signup(user_id="d1"))
    service.enqueue(signup, Signup(user_id="w1"))
    worker = Worker(
        module=define_module(name="app", jobs=[once, signup]),
        driver=driver,
        install_signal_handlers=False,
        wait_seconds=0,
    )
    summary = worker.run_until_empty(timeout=30)
    assert (summary.counts["discarded"], summary.done) == (1, 1)
    service.enqueue(once, Signup(user_id="d1"))  # discarded: released
    service.enqueue(signup, Signup(user_id="w1"))  # done, on the long-running worker: released


def test_long_delayed_unique_jobs_are_dispatched_by_the_scheduler(aws: Aws) -> None:
    from glasswork.jobs import create_scheduler_handler

    create_scheduler_table("scheduled-jobs", client=aws.dynamodb)
    url = aws.create_queue("jobs")
    driver = driver_for(
        aws, {"default": url}, unique_table="scheduled-jobs", scheduler_table="scheduled-jobs"
    )
    result = JobService(driver).enqueue_in(signup, Signup(user_id="later"), "20m")
    assert result.scheduled_at is not None
    with pytest.raises(DuplicateJobError):
        JobService(driver).enqueue(signup, Signup(user_id="later"))
    due = result.scheduled_at.timestamp()
    handler = create_scheduler_handler(
        table_name="scheduled-jobs", driver=driver, client=aws.dynamodb, clock=lambda: due + 1
    )
    assert handler({}, None)["dispatched"] == 1  # the job takes its own key again
    [sent] = aws.drain(url, wait=1, expected=1)
    assert json.loads(sent["Body"])["jobId"] == result.job_id
