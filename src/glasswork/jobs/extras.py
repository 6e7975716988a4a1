"""The optional extras (``pip install 'glasswork[sqs]'``, ...) and the error a missing one
gives: importing a part that needs one says which extra to install, while any other import
failure (a bug, a broken installation) surfaces as itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
