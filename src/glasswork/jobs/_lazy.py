"""Names a package loads on first use, so optional extras (boto3, prometheus-client) and
modules that need them stay out of ``import glasswork.jobs``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any


def load_lazily(package: str, names: Mapping[str, str], name: str) -> Any:
    """``package``'s attribute ``name`` from the module ``names[name]`` (relative to
    ``package``), imported now and kept on the package; a module ``__getattr__`` calls it."""
    module = names.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    setattr(sys.modules[package], name, value)
    return value
