"""A key scoped by its job name, as one string no other (job name, key) pair gives.

``<job name><sep><key>`` is what earlier releases wrote. It is ambiguous only when the job
name holds ``sep``: job ``refund`` keyed ``partial#o-17`` and job ``refund#partial`` keyed
``o-17`` are both ``refund#partial#o-17``. Such a name is written length-prefixed instead,
``<sep><length of the name><sep><name><sep><key>``, which no plain form can be (a job name
is never empty, so a plain form never starts with ``sep``). Every other key reads as it did,
so records an earlier release stored (completed idempotency keys, held unique keys) still
count after an upgrade.
"""

from __future__ import annotations


def scoped_key(job_name: str, key: str, sep: str = "#") -> str:
    """``key`` of job ``job_name`` as one unambiguous string (see the module docstring)."""
    if sep in job_name:
        return f"{sep}{len(job_name)}{sep}{job_name}{sep}{key}"
    return f"{job_name}{sep}{key}"
