"""What every test directory shares: the moto server, started once per session by the first
test that asks for ``moto_endpoint`` (tests/integration, the dashboard's browser tests), and
the PostgreSQL server of tests marked ``postgres`` (tests/pgtest.py); and the markers that
follow from others (``aws`` for a test on the moto server; ``slow`` for one that starts
processes or a browser, or talks to moto), so that ``pytest -m "not slow"`` is the quick
loop."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``postgres`` finds (or starts) the server before its fixtures run, so that
    without one every such test is skipped for one reason, on one line of the summary."""
    marked = item.get_closest_marker("postgres") is not None
    if marked or "pgtest" in sys.modules:
        import pgtest

        pgtest.in_marked_test = marked
        if marked:
            pgtest.dsn()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "moto_endpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.aws)
        if any(item.get_closest_marker(name) for name in ("subprocess", "browser", "aws")):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server on 127.0.0.1, for the whole session."""
    pytest.importorskip("moto.server")
    from moto_support import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``disk("2m")``: a tmpfs of that size to fill up for real, unmounted after the test
    (small_disk.py: root only; skipped elsewhere, failing under CI)."""
    from small_disk import mount_small_disk, unmount

    mounted: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"disk-{len(mounted)}"
        mount_small_disk(path, size)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        unmount(path)
