"""The AWS Lambda runtime: :func:`~glasswork.jobs.bootstrap_worker` makes the handler that
turns SQS batches and EventBridge events into runs (:mod:`.handler`); :mod:`.batch` runs a
batch's records (concurrency, FIFO groups, the invocation's deadline); :mod:`.settle` turns
outcomes into dead letters and retry delays; :mod:`.source_queues` knows the queues records
come from; :mod:`.checks` checks the deployment at the first batch."""
