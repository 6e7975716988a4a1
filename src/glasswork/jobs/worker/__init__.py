"""The long-running worker, one concern per module.

* :mod:`.loop`: :class:`Worker`, the control loop: receive, hand out, settle, stop;
* :mod:`.receiving`: how many jobs to ask the driver for, and backing off when it fails;
* :mod:`.pool`: the job threads and the queue of jobs they take from;
* :mod:`.slots`: one thread's slot, and running a sync job so a hung handler can be left;
* :mod:`.event_loop`: the event loop ``async def`` jobs run on;
* :mod:`.settling`: outcomes into driver calls, in batches; releases at shutdown;
* :mod:`.leases`: extending the leases of long-running jobs;
* :mod:`.periodic`: firing periodic jobs on their schedules;
* :mod:`.shutdown`: signals and stop requests;
* :mod:`.logs`, :mod:`.summary`: per-job log lines, and what a run did.
"""

from .loop import DEFAULT_JOB_TIMEOUT, Worker
from .summary import SUMMARY_KINDS, WorkerSummary

__all__ = ["DEFAULT_JOB_TIMEOUT", "SUMMARY_KINDS", "Worker", "WorkerSummary"]
