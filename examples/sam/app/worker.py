"""WorkerFunction: runs jobs from the SQS queue and periodic jobs from EventBridge."""

from jobs import WorkerModule, make_driver

from glasswork.jobs import bootstrap_worker

handler = bootstrap_worker(module=WorkerModule, driver=make_driver())
