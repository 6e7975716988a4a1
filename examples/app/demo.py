"""Run the example app end to end on SQLite, no server needed:

    pip install -e . && python examples/app/demo.py [path/to/jobs.db]

Enqueues a few jobs into a fresh SQLite file (a new temporary one unless a path is given),
runs a worker until the queue is drained, and prints what happened.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # make `app` importable

from app.jobs import WelcomeEmail, cleanup_stale_sessions, send_welcome_email
from app.module import AppModule
from glasswork.jobs import DuplicateJobError, JobService, SQLiteQueueDriver, Worker


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="  %(levelname)-7s %(name)s: %(message)s", stream=sys.stdout
    )
    if len(sys.argv) > 1:
        db = Path(sys.argv[1])
        if db.exists():
            print(f"{db} exists; the demo needs a new file (it counts every job in it)")
            return 2
    else:
        db = Path(tempfile.mkdtemp(prefix="glasswork-demo-")) / "jobs.db"
    driver = SQLiteQueueDriver(db)
    jobs = JobService(driver)

    print(f"1. Enqueueing into {db}")
    for user_id in ("1", "2", "404"):
        result = jobs.enqueue(send_welcome_email, WelcomeEmail(user_id=user_id))
        print(f"   send-welcome-email user {user_id}: message {result.message_id}")
    try:
        jobs.enqueue(send_welcome_email, WelcomeEmail(user_id="1"))
    except DuplicateJobError as exc:
        print(f"   refused a second email for user 1: {exc}")
    jobs.enqueue_in(send_welcome_email, WelcomeEmail(user_id="3"), "1s")
    print("   send-welcome-email user 3, in 1 second")
    jobs.enqueue(cleanup_stale_sessions, None)
    print("   cleanup-stale-sessions, now (it also runs daily with `worker --periodic`)")

    print("2. Running a worker until the queue is drained")
    worker = Worker(module=AppModule, driver=driver, concurrency=4)
    summary = worker.run_until_empty(include_delayed=True, timeout=60)

    print("3. What happened")
    for template, to in worker.services.email_service.sent:
        print(f"   done: {template} email to {to}")
    for dead in driver.dead_letters():
        print(f"   dead-lettered: {dead.job_name} {dead.body}\n      reason: {dead.reason}")
    print(f"   summary: {summary}")
    print(f"   queues now: {driver.stats()}")
    ok = summary.done == 4 and summary.dead_lettered == 1 and driver.pending_count() == 0
    print(f"   look inside: glasswork stats --driver sqlite:///{db}")
    print(f"                glasswork dlq list --driver sqlite:///{db}")
    print("OK" if ok else "UNEXPECTED RESULT")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
