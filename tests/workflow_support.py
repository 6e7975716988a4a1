"""Jobs for the workflow tests (tests/test_workflows.py), importable by worker processes:
each run of a member or a callback appends a line to the file its payload names (its
effect), so a test counts runs across processes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from glasswork import define_module
from glasswork.jobs import JobContext, define_job
from glasswork.jobs.errors import PermanentJobError
from glasswork.jobs.workflows import MemberFailure


class Item(BaseModel):
    n: int
    log: str  # the file each run appends to
    hang_on: int = -1  # the first run of this n hangs after its effect (to be killed)
    fail: bool = False  # it fails for good (dead-lettered)


class Tally(BaseModel):
    n: int
    log: str


def effect(log: str, what: dict[str, object]) -> None:
    with open(log, "a") as out:
        out.write(json.dumps({**what, "pid": os.getpid()}) + "\n")
        out.flush()
        os.fsync(out.fileno())


def double(item: Item, ctx: JobContext) -> Tally:
    effect(item.log, {"job": "double", "n": item.n, "attempt": ctx.attempt})
    if item.fail:
        raise PermanentJobError("seven is refused")
    if item.n == item.hang_on and ctx.attempt == 1:
        time.sleep(600)  # killed here: its effect happened, its end was never recorded
    return Tally(n=item.n * 2, log=item.log)


def add_one(tally: Tally, ctx: JobContext) -> Tally:
    effect(tally.log, {"job": "add_one", "n": tally.n})
    return Tally(n=tally.n + 1, log=tally.log)


def total(tallies: list[Tally]) -> list[int]:
    if tallies:
        effect(tallies[0].log, {"job": "total", "count": len(tallies)})
    return [t.n for t in tallies]


def total_of_some(tallies: list[MemberFailure | Tally]) -> dict[str, list[int]]:
    ok = [t.n for t in tallies if isinstance(t, Tally)]
    failed = [t.step for t in tallies if isinstance(t, MemberFailure)]
    return {"ok": ok, "failed": failed}


doubled = define_job(name="wf-double", handler=double, schema=Item)
plus_one = define_job(name="wf-add-one", handler=add_one, schema=Tally)
totalled = define_job(name="wf-total", handler=total, schema=list[Tally])
partial_total = define_job(
    name="wf-total-some", handler=total_of_some, schema=list[MemberFailure | Tally]
)
JOBS = [doubled, plus_one, totalled, partial_total]
module = define_module(name="workflows", jobs=JOBS)


def runs(log: Path, job: str | None = None) -> list[dict[str, object]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    return [r for r in lines if job is None or r["job"] == job]


def serve(kind: str, where: str) -> None:
    """A worker process on ``where`` (run by the tests: ``python workflow_support.py``)."""
    from glasswork.jobs.worker import Worker
    from test_workflows import open_driver

    driver = open_driver(kind, where, visibility_timeout=1)
    Worker(module=module, driver=driver, concurrency=4, wait_seconds=0.05).run()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
