"""Signature: a job and its payload, validated, as a workflow step (``job.s(payload)``).
Defined with :class:`~glasswork.jobs.JobDefinition` (which makes it), named here too."""

from __future__ import annotations

from ..definition import Signature

__all__ = ["Signature"]
