"""The fixture app plus an idempotent job, for `glasswork worker fixtures_app.once:OnceModule`."""

from __future__ import annotations

from glasswork import define_module
from glasswork.jobs import define_job

from .app import AppModule, _record_handler

# Runs once per job id. Its claim lasts its 3 s timeout, so a worker killed mid-run holds
# the job back for at most that long.
record_once = define_job(
    name="record-once",
    handler=_record_handler,
    timeout="3s",
    idempotent=True,
    retry={"max_attempts": 5, "backoff": 0.5, "jitter": False},
)

OnceModule = define_module(name="once", imports=[AppModule], jobs=[record_once])
