"""Glasswork: background jobs for Python services on AWS.

The module system lives here; jobs are in :mod:`glasswork.jobs`.
"""

from __future__ import annotations

from .modules import Module, Provider, Services, define_module, provide

__all__ = ["Module", "Provider", "Services", "define_module", "provide"]
__version__ = "0.1.0"
