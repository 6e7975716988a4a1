"""The optional extras (``pip install 'glasswork[sqs]'``, ...) and the error a missing one
gives: importing a part that needs one says which extra to install, while any other import
failure (a bug, a broken installation) surfaces as itself; names a package loads on first
use (:func:`load_lazily`), so that optional extras and the modules that need them stay out of
``import glasswork.jobs``; and names and modules of earlier releases, still importable from
their old places (:func:`load_moved`, :class:`MovedModules`)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import ConfigurationError

#: The top-level packages each extra installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "sqs": ("boto3", "botocore"),
    "postgres": ("psycopg", "psycopg_pool"),
    "dashboard": ("starlette", "jinja2", "uvicorn"),
    "prometheus": ("prometheus_client",),
    "cron": ("croniter",),
}


@contextmanager
def needs_extra(
    extra: str, what: str, error: Callable[[str], Exception] = ConfigurationError
) -> Iterator[None]:
    """Imports inside the block that fail for lack of one of ``extra``'s packages raise
    ``error("<what>: pip install 'glasswork[<extra>]'")``; ``what`` may name the missing
    package as ``{name}``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in EXTRAS[extra]:
            message = what.replace("{name}", exc.name)  # not format(): `what` may hold braces
            raise error(f"{message}: pip install 'glasswork[{extra}]'") from None
        raise


def load_lazily(package: str, names: Mapping[str, str], name: str) -> Any:
    """``package``'s attribute ``name`` from the module ``names[name]`` (relative to
    ``package``), imported now and kept on the package; a module ``__getattr__`` calls it."""
    module = names.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, package), name)
    setattr(sys.modules[package], name, value)
    return value


def load_moved(
    package: str, moved: Mapping[str, str], name: str, quiet: Container[str] = ()
) -> Any:
    """``package``'s attribute ``name`` that now lives in the module ``moved[name]`` (a full
    path), for a module ``__getattr__``: a ``DeprecationWarning`` naming the new place, unless
    ``name`` is in ``quiet`` (still documented at the old place). Not kept on the package, so
    that every old import warns where it is written."""
    module = moved.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # `from package import name` asks twice: the import system's hasattr, then the
    # statement's own getattr, which warns (once per statement, not twice).
    asked_by_import_system = sys._getframe(2).f_code.co_name == "_handle_fromlist"
    if name not in quiet and not asked_by_import_system:
        warnings.warn(
            f"{package}.{name} is now {module}.{name}; import it from {module}",
            DeprecationWarning,
            stacklevel=3,  # the line that imports it, past the package's __getattr__
        )
    return value


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Old module paths that still import, as the modules now at their new paths (with a
    ``DeprecationWarning``): ``import glasswork.jobs.scheduler`` gives
    ``glasswork.jobs.drivers.sqs.scheduler``. Registered once by ``glasswork.jobs``."""

    def __init__(self, moved: Mapping[str, str]) -> None:
        self.moved = dict(moved)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new = self.moved[spec.name]
        warnings.warn(
            f"{spec.name} is now {new}; import it from there", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(new)

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the module at the new path is loaded already."""

    @classmethod
    def register(cls, moved: Mapping[str, str]) -> None:
        if not any(isinstance(finder, cls) for finder in sys.meta_path):
            sys.meta_path.append(cls(moved))
