"""SchedulerFunction: every minute, sends jobs due from the DynamoDB table to SQS."""

import os

from jobs import make_driver

from glasswork.jobs import create_scheduler_handler

handler = create_scheduler_handler(
    table_name=os.environ["SCHEDULED_JOBS_TABLE"],
    region=os.environ["AWS_REGION"],
    driver=make_driver(),
)
