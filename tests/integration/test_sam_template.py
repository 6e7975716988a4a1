"""examples/sam/template.yaml stays valid and in step with the code it deploys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glasswork.jobs.drivers.sqs.history import HISTORY_ATTRIBUTES, HISTORY_INDEX
from glasswork.jobs.drivers.sqs.scheduler import TTL_ATTRIBUTE

yaml = pytest.importorskip("yaml")

_CFN_LINT = "import sys; from cfnlint.runner import main; sys.exit(main())"
TEMPLATE = Path(__file__).parents[2] / "examples" / "sam" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short intrinsic tags (!Ref, !GetAtt) as plain values."""


def _intrinsic(loader: Any, suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)["Resources"])


def test_worker_reports_batch_item_failures_and_runs_the_periodic_job(resources: dict) -> None:
    events = resources["WorkerFunction"]["Properties"]["Events"]
    assert events["Jobs"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert events["DailyCleanup"]["Type"] == "Schedule"
    assert events["DailyCleanup"]["Properties"]["Input"] == '{"jobName": "daily-cleanup"}'


def test_worker_concurrency_is_bounded_and_the_poller_stays_within_it(resources: dict) -> None:
    worker = resources["WorkerFunction"]["Properties"]
    reserved = worker["ReservedConcurrentExecutions"]
    poller = worker["Events"]["Jobs"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert 2 <= poller <= reserved  # else Lambda throttles the batches the poller sends


def test_worker_may_check_its_event_source_mapping(resources: dict) -> None:
    statements = [
        statement
        for policy in resources["WorkerFunction"]["Properties"]["Policies"]
        for statement in (policy.get("Statement", []) if isinstance(policy, dict) else [])
    ]
    assert any(s["Action"] == "lambda:ListEventSourceMappings" for s in statements)


def test_queue_has_a_redrive_policy_to_the_dlq(resources: dict) -> None:
    policy = resources["JobQueue"]["Properties"]["RedrivePolicy"]
    assert policy["deadLetterTargetArn"] == {"GetAtt": "JobDeadLetterQueue.Arn"}
    assert policy["maxReceiveCount"] > 5  # above the example jobs' max_attempts


def test_scheduler_runs_every_minute(resources: dict) -> None:
    [event] = resources["SchedulerFunction"]["Properties"]["Events"].values()
    assert event["Properties"]["Schedule"] == "rate(1 minute)"


def test_scheduler_may_make_the_calls_a_pass_makes(resources: dict) -> None:
    policies = resources["SchedulerFunction"]["Properties"]["Policies"]
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    [statement] = [s for s in statements if s["Resource"] == {"GetAtt": "ScheduledJobsTable.Arn"}]
    [status] = [s for s in statements if s["Resource"] == {"GetAtt": "JobStatusTable.Arn"}]
    assert status["Action"] == "dynamodb:PutItem"  # the jobs it sends on find their status
    # Query for due items, UpdateItem for claims (alone or in a TransactWriteItems, which
    # has no action of its own), BatchWriteItem for the deletes.
    assert set(statement["Action"]) == {
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:BatchWriteItem",
    }
    sends = [
        p["SQSSendMessagePolicy"]["QueueName"] for p in policies if "SQSSendMessagePolicy" in p
    ]
    assert {"GetAtt": "JobDeadLetterQueue.QueueName"} in sends  # unusable items


def test_table_matches_the_scheduler_schema(resources: dict) -> None:
    table = resources["ScheduledJobsTable"]["Properties"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def test_status_table_matches_the_status_schema(resources: dict) -> None:
    table = resources["JobStatusTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == HISTORY_INDEX
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["shard", "updated"]
    assert tuple(index["Projection"]["NonKeyAttributes"]) == HISTORY_ATTRIBUTES
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


@pytest.mark.subprocess
def test_template_passes_cfn_lint() -> None:
    pytest.importorskip("cfnlint")
    # E2533 (deprecated runtime) depends on today's date, not on the template's validity.
    result = subprocess.run(
        [sys.executable, "-c", _CFN_LINT, "--ignore-checks", "E2533", "--", str(TEMPLATE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
