"""The dashboard on an ``sqs://`` driver against the moto server: queue counts with the DLQ
depth as dead, dead letters listed, shown, redriven and purged through the driver's DLQ
operations (filtered, paged, grouped by reason and acted on by group, as far as peeking
allows), job lookup as far as SQS allows, the workers panel from the queues' Lambda event
source mappings and CloudWatch's ConcurrentExecutions, and the outcome chart from the
CloudWatch metrics that CloudWatch makes of ``EMFMetrics``' lines (or, without them, a
notice and the sampled depth chart)."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")

from starlette.testclient import TestClient

from dashboard_support import MALFORMED_BODY, XSS_NOTE, SQSShop, seed_sqs, serve_dashboard
from fixtures_app.shop import ShopModule, charge_card, send_receipt
from glasswork.dashboard import create_app
from glasswork.jobs import EMFMetrics, JobMessage, MockQueueDriver, bootstrap_worker
from glasswork.jobs.metrics import CloudWatchOutcomes
from glasswork.jobs.testing import sqs_record

from .conftest import REGION, Aws

BASE = "http://127.0.0.1:8765"
TOKEN = "test-token-0123456789"
NAMESPACE = "ShopJobs"


@pytest.fixture
def shop(aws: Aws) -> SQSShop:
    seeded = seed_sqs(aws.endpoint, "shop", REGION)
    # Each DLQ peek ends with a receive that waits for nothing (1 s, so that SQS's sampling
    # of its servers finds every message): moto has one server, so no wait here.
    seeded.driver.dead_letter_admin.wait_seconds = 0
    return seeded


def client_for(shop: SQSShop, **options: Any) -> TestClient:
    app = create_app(
        shop.driver, module=ShopModule, driver_url=shop.url, csrf_token=TOKEN, **options
    )
    return TestClient(app, base_url=BASE, follow_redirects=False)


def counts(page: str) -> dict[str, list[int]]:
    rows = re.findall(r'<tr data-queue="(\w+)">(.*?)</tr>', page, re.S)
    return {
        queue: [int(n) for n in re.findall(r"<td[^>]*>(?:<a[^>]*>)?(\d+)", cells)]
        for queue, cells in rows
    }


def totals(page: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-outcome="(\w+)">(\d+)<', page)}


def test_queues_page_shows_sqs_counts_with_the_dlq_depth_as_dead(shop: SQSShop) -> None:
    client = client_for(shop)
    page = client.get("/").text
    # [ready, delayed, in flight, dead]: dead is each queue's DLQ depth.
    assert counts(page) == {"emails": [0, 0, 0, 1], "payments": [0, 0, 0, 2], "media": [0, 1, 0, 0]}
    assert "SQS counts are approximate" in page
    assert "the sqs driver cannot record job outcomes per minute" in page
    assert "--cloudwatch-namespace" in page  # how to get the chart
    assert 'id="depth-chart"' not in page  # one sample so far
    shop.driver.enqueue(JobMessage.create("charge-card", {"amount": 1}, queue="payments"))
    live = client.get("/fragments/queues").text
    assert counts(live)["payments"] == [1, 0, 0, 2]
    assert 'id="depth-chart"' in live  # sampled from the queue attributes


def test_dead_letters_are_listed_shown_redriven_and_purged(shop: SQSShop) -> None:
    client = client_for(shop)
    listed = shop.driver.dead_letters()
    declined = next(r for r in listed if "__xss=1" in r.body)
    malformed = next(r for r in listed if r.body == MALFORMED_BODY)
    listing = client.get("/dead-letters").text
    assert listing.count("<tr data-id=") == 3
    assert "<script>window.__xss" not in listing
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in listing
    detail = client.get(f"/dead-letters/{declined.id}").text
    assert "\n  &#34;decline&#34;: true,\n" in detail  # the payload, pretty-printed
    assert "Queue</dt><dd>payments" in detail
    raw = client.get(f"/dead-letters/{malformed.id}").text
    assert "not a readable job message" in raw and "&lt;script&gt;window.__xss=3" in raw
    assert client.get("/dead-letters?queue=payments").text.count("<tr data-id=") == 2

    confirm = client.get(f"/dead-letters/confirm?action=redrive&id={declined.id}")
    assert 'id="confirm-button"' in confirm.text and "charge-card" in confirm.text
    done = client.post("/dead-letters/redrive", data={"csrf_token": TOKEN, "id": declined.id})
    assert done.headers["location"] == "/dead-letters?redrove=1&asked=1"
    stats = shop.driver.stats()
    assert (stats["payments"].ready, stats["payments"].dead) == (1, 1)

    gone = client.post("/dead-letters/redrive", data={"csrf_token": TOKEN, "id": declined.id})
    assert gone.status_code == 502  # SQS says which ids it no longer holds
    assert f"no dead letter with id {declined.id}" in gone.text

    purged = client.post("/dead-letters/purge", data={"csrf_token": TOKEN, "id": malformed.id})
    assert purged.headers["location"] == "/dead-letters?purged=1&asked=1"
    assert shop.driver.stats()["emails"].dead == 0
    left = client.get(purged.headers["location"]).text
    assert "Purged 1 of 1" in left and left.count("<tr data-id=") == 1
    assert declined.id not in left and malformed.id not in left


def test_lookup_finds_dead_letters_and_scheduled_jobs_and_says_what_it_cannot(
    shop: SQSShop,
) -> None:
    client = client_for(shop)
    dead = client.get(f"/lookup?job_id={shop.seeded.declined_job_id}").text
    assert 'data-state="dead"' in dead and "dead letter #" in dead
    assert XSS_NOTE not in dead  # escaped
    waiting = client.get(f"/lookup?job_id={shop.seeded.waiting_job_id}").text
    assert 'data-state="delayed"' in waiting and "due in 59m" in waiting  # scheduler table
    assert "jobs waiting on an SQS queue or in flight cannot be looked up by id" in waiting
    queued = shop.driver.enqueue(JobMessage.create("charge-card", {}, queue="payments"))
    missing = client.get(f"/lookup?job_id={queued.job_id}").text
    assert "No job" in missing and "cannot be looked up" in missing  # honest about why


def test_dead_letters_are_searched_paged_and_acted_on_by_group_as_far_as_peeking_allows(
    shop: SQSShop,
) -> None:
    for n in range(12):
        body = JobMessage.create("send-receipt", {"order_id": n}, queue="emails").encode()
        shop.driver.dead_letter(body, "SMTP 421 try again later", queue="emails")
    client = client_for(shop)
    first = client.get("/dead-letters?limit=5").text
    assert "<b>15</b> dead letters, newest first." in first
    assert "SQS cannot search or page a queue" in first  # the page says what it did
    seen = re.findall(r'<tr data-id="([^"]+)">', first)
    following = re.search(r'href="([^"]+)" id="next-page"', first)
    while following is not None:
        page = client.get(following.group(1).replace("&amp;", "&")).text
        seen += re.findall(r'<tr data-id="([^"]+)">', page)
        following = re.search(r'href="([^"]+)" id="next-page"', page)
    assert len(seen) == len(set(seen)) == 15
    assert len(re.findall(r"<tr data-id=", client.get("/dead-letters?q=smtp+421").text)) == 12
    assert "<b>2</b> dead letters match" in client.get("/dead-letters?queue=payments").text

    group = next(
        row
        for row in re.findall(r"<tr data-group=.*?</tr>", first, re.S)
        if "SMTP 421 try again later" in row
    )
    link = re.search(r'href="([^"]+)">Redrive all 12<', group)
    assert link is not None
    confirm = client.get(link.group(1).replace("&amp;", "&")).text
    assert "Redrive all 12 dead letters?" in confirm
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm):
        fields.setdefault(name, []).append(value.replace("&#34;", '"'))
    done = client.post("/dead-letters/redrive-all", data=fields)
    assert done.headers["location"] == "/dead-letters?redrove=12&asked=12"
    stats = shop.driver.stats()
    assert (stats["emails"].ready, stats["emails"].dead) == (12, 1)
    assert stats["payments"].dead == 2  # the other groups stay


# -- the workers panel: Lambda functions ------------------------------------------------------


def subscribe_function(aws: Aws, queue_url: str, name: str) -> None:
    """A Lambda function reading ``queue_url`` (an event source mapping, capped at 5)."""
    import io
    import zipfile

    import boto3

    iam = boto3.client("iam", region_name=REGION, endpoint_url=aws.endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    functions = boto3.client("lambda", region_name=REGION, endpoint_url=aws.endpoint)
    functions.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    functions.create_event_source_mapping(
        EventSourceArn=aws.queue_arn(queue_url),
        FunctionName=name,
        BatchSize=10,
        ScalingConfig={"MaximumConcurrency": 5},
    )


def test_workers_panel_lists_the_lambda_functions_and_their_concurrency(
    aws: Aws, shop: SQSShop
) -> None:
    assert "No Lambda function is subscribed to these queues" in client_for(shop).get("/").text
    subscribe_function(aws, shop.driver.queues["payments"], "shop-payments")
    subscribe_function(aws, shop.driver.queues["emails"], "shop-emails")
    cloudwatch_client(aws).put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "ConcurrentExecutions",
                "Dimensions": [{"Name": "FunctionName", "Value": "shop-payments"}],
                "Value": 3,
                "Unit": "Count",
                "Timestamp": datetime.now(UTC),
            }
        ],
    )
    page = client_for(shop).get("/").text
    rows = dict(re.findall(r'<tr data-function="([^"]+)">(.*?)</tr>', page, re.S))
    assert sorted(rows) == ["shop-emails", "shop-payments"]
    assert (
        "<td>payments</td>" in rows["shop-payments"] and "<td>Enabled</td>" in rows["shop-payments"]
    )
    assert '<td class="concurrency">3 <span class="hint">at ' in rows["shop-payments"]
    assert "no data in the last 15 minutes" in rows["shop-emails"]
    assert "<td>5</td>" in rows["shop-emails"]  # the mapping's maximum concurrency
    assert "No function works media." in page
    assert "Lambda workers keep no heartbeat" in page


def test_workers_panel_says_when_lambda_concurrency_cannot_be_read(shop: SQSShop) -> None:
    from dashboard_support import free_port
    from glasswork.jobs.metrics.lambda_concurrency import LambdaConcurrency

    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    lambdas = LambdaConcurrency(
        shop.driver.queues, region=REGION, endpoint_url=nobody, sqs=shop.driver.client
    )
    page = client_for(shop, lambdas=lambdas).get("/").text
    assert 'id="workers-error"' in page and "EndpointConnectionError" in page
    assert "Lambda concurrency is not available" in page
    assert counts(page)["payments"] == [0, 0, 0, 2]  # the rest of the page still works


# -- the outcome chart from CloudWatch --------------------------------------------------------


def put_emf(cloudwatch: Any, line: str, at: datetime | None = None) -> None:
    """What CloudWatch does with an EMF log line (at its own timestamp, or ``at``): for each
    directive, each metric under each dimension set, valued from the document's root."""
    document = json.loads(line)
    meta = document["_aws"]
    timestamp = at or datetime.fromtimestamp(meta["Timestamp"] / 1000, UTC)
    for directive in meta["CloudWatchMetrics"]:
        for names in directive["Dimensions"]:
            dimensions = [{"Name": n, "Value": document[n]} for n in names]
            data = []
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                datum = {
                    "MetricName": metric["Name"],
                    "Dimensions": dimensions,
                    "Timestamp": timestamp,
                    "Unit": metric["Unit"],
                    **({"Values": value} if isinstance(value, list) else {"Value": value}),
                }
                data.append(datum)
            cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=data)


def cloudwatch_client(aws: Aws) -> Any:
    import boto3

    return boto3.client("cloudwatch", region_name=REGION, endpoint_url=aws.endpoint)


def lambda_emf_lines(service: str) -> list[str]:
    """Run a batch of the shop's jobs through the Lambda worker with ``EMFMetrics``: 3 done
    receipts, 2 retried, 1 charge done, 1 declined (dead-lettered)."""
    lines: list[str] = []
    metrics = EMFMetrics(namespace=NAMESPACE, dimensions={"service": service}, write=lines.append)
    handler = bootstrap_worker(module=ShopModule, driver=MockQueueDriver(), metrics=metrics)
    receipts = [{"order_id": n, "fail_times": n // 3} for n in range(5)]
    messages = [JobMessage.create(send_receipt.name, p, queue="emails") for p in receipts]
    messages += [
        JobMessage.create(charge_card.name, p, queue="payments")
        for p in ({"amount": 5}, {"decline": True})
    ]
    response = handler({"Records": [sqs_record(m, queue="emails") for m in messages]}, None)
    assert len(response["batchItemFailures"]) == 2
    assert len(lines) == 2  # one line per job name
    return lines


def test_outcome_chart_reads_the_cloudwatch_metrics_of_emf(aws: Aws, shop: SQSShop) -> None:
    cloudwatch = cloudwatch_client(aws)
    now = datetime.now(UTC)
    for line in lambda_emf_lines("shop"):
        put_emf(cloudwatch, line)
        put_emf(cloudwatch, line, at=now - timedelta(minutes=7))
        put_emf(cloudwatch, line, at=now - timedelta(minutes=90))  # before the chart's hour
    for line in lambda_emf_lines("other-service"):
        put_emf(cloudwatch, line)  # the same namespace, another service: not charted

    outcomes = CloudWatchOutcomes(
        NAMESPACE, {"service": "shop"}, region=REGION, endpoint_url=aws.endpoint
    )
    page = client_for(shop, outcomes=outcomes).get("/").text
    assert totals(page) == {"done": 8, "retry": 4, "dead_letter": 2, "discarded": 0, "cancelled": 0}
    assert "From CloudWatch metrics (namespace ShopJobs, service=shop) of EMFMetrics." in page
    minutes = {c.minute for c in outcomes.outcome_history(now - timedelta(hours=1))}
    assert minutes == {
        (now - timedelta(minutes=ago)).replace(second=0, microsecond=0) for ago in (0, 7)
    }
    assert {c.job_name for c in outcomes.outcome_history(now - timedelta(hours=1))} == {
        "send-receipt",
        "charge-card",
    }

    # Read at most once a minute (GetMetricData is billed per metric): new data shows when
    # the cache expires.
    for line in lambda_emf_lines("shop"):
        put_emf(cloudwatch, line)
    assert totals(client_for(shop, outcomes=outcomes).get("/").text)["done"] == 8
    outcomes.cache_seconds = 0
    assert totals(client_for(shop, outcomes=outcomes).get("/").text)["done"] == 12


def test_without_a_service_dimension_every_service_in_the_namespace_is_charted(
    aws: Aws,
) -> None:
    cloudwatch = cloudwatch_client(aws)
    for service in ("shop", "billing"):
        for line in lambda_emf_lines(service):
            put_emf(cloudwatch, line)
    outcomes = CloudWatchOutcomes(NAMESPACE, region=REGION, endpoint_url=aws.endpoint)
    history = outcomes.outcome_history(datetime.now(UTC) - timedelta(hours=1))
    assert sum(c.count for c in history if c.outcome == "done") == 8
    assert (
        CloudWatchOutcomes("Empty", region=REGION, endpoint_url=aws.endpoint).outcome_history(
            datetime.now(UTC) - timedelta(hours=1)
        )
        == []
    )


def test_glasswork_dashboard_charts_cloudwatch_metrics_given_a_namespace(
    aws: Aws, shop: SQSShop, tmp_path: Path
) -> None:
    cloudwatch = cloudwatch_client(aws)
    for line in lambda_emf_lines("shop"):
        put_emf(cloudwatch, line)
    options = ("--cloudwatch-namespace", NAMESPACE, "--cloudwatch-dimension", "service=shop")
    with serve_dashboard(tmp_path, *options, driver_url=shop.url) as url:
        page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
    assert totals(page) == {"done": 4, "retry": 2, "dead_letter": 1, "discarded": 0, "cancelled": 0}
    assert counts(page)["payments"] == [0, 0, 0, 2]
