"""What every test directory shares: the moto server, started once per session by the first
test that asks for ``moto_endpoint`` (tests/integration, the dashboard's browser tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server on 127.0.0.1, for the whole session."""
    pytest.importorskip("moto.server")
    from moto_support import moto_server

    with moto_server() as endpoint:
        yield endpoint
