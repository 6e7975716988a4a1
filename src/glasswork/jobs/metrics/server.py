"""MetricsServer: the long-running worker's HTTP endpoint for Prometheus and probes.

* ``GET /metrics``: the Prometheus text exposition of the worker's series;
* ``GET /healthz``: 200 while the worker's loop is alive, 503 when it is stuck: a container
  liveness probe restarts a worker whose loop hangs, not one that is merely busy with jobs.
  The loop is an asyncio loop (alive while a callback scheduled on it runs within
  ``liveness_timeout`` seconds) or one that beats a :class:`Heartbeat` every turn, as the
  long-running :class:`~glasswork.jobs.Worker`'s control loop does (alive while its beats
  are no more than ``liveness_timeout`` seconds late).

It serves from its own threads, so a slow scrape never holds up jobs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..errors import ConfigurationError
from .prometheus import PrometheusMetrics

if TYPE_CHECKING:
    from ..drivers.contract import QueueDriver
    from .sink import MetricsSink

logger = logging.getLogger("glasswork.worker")

StartResponse = Callable[..., Any]


class Heartbeat:
    """The liveness of a loop that is not asyncio's: each turn it calls :meth:`beat`, saying
    when the next beat is due at the latest (a turn may wait, say on a long poll)."""

    __slots__ = ("due",)

    def __init__(self) -> None:
        self.due = time.monotonic()

    def beat(self, now: float, within: float) -> None:
        """A turn began at ``now`` (``time.monotonic()``); the next begins ``within``
        seconds later at the latest."""
        self.due = now + within

    def late(self) -> float:
        """Seconds past the time the last beat promised the next one (negative: not due)."""
        return time.monotonic() - self.due


class MetricsServer:
    """Serve ``metrics`` (a :class:`PrometheusMetrics`) and the liveness of a worker's loop
    on ``host:port``. :meth:`start` binds (an address in use raises
    :class:`ConfigurationError` at once);
    :meth:`close` stops serving."""

    def __init__(
        self,
        metrics: PrometheusMetrics,
        port: int,
        host: str = "0.0.0.0",
        *,
        driver: QueueDriver | None = None,
        liveness_timeout: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.port = port
        self.host = host
        self.driver = driver
        self.liveness_timeout = liveness_timeout
        self._loop: asyncio.AbstractEventLoop | Heartbeat | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_sinks(
        cls, sinks: Iterable[MetricsSink], port: int, host: str, driver: QueueDriver
    ) -> MetricsServer:
        """The server for a worker with ``sinks``: it serves the first
        :class:`PrometheusMetrics` among them (the caller added one)."""
        prometheus = next(s for s in sinks if isinstance(s, PrometheusMetrics))
        return cls(prometheus, port, host, driver=driver)

    @property
    def url(self) -> str:
        """``http://host:port`` (the bound port, when 0 asked for any free one)."""
        port = self._server.server_port if self._server is not None else self.port
        return f"http://{self.host}:{port}"

    def start(self, loop: asyncio.AbstractEventLoop | Heartbeat) -> None:
        """Serve in a background thread; ``/healthz`` watches ``loop`` (an asyncio loop, or
        the :class:`Heartbeat` of a loop of your own)."""
        from prometheus_client import make_wsgi_app

        if self.driver is not None:
            self.metrics.watch(self.driver)
        self._loop = loop
        prometheus = make_wsgi_app(self.metrics.registry)

        def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                return self._healthz(start_response)
            return prometheus(environ, start_response)  # type: ignore[no-any-return]

        try:
            self._server = make_server(
                self.host, self.port, app, _ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another port (--metrics-port) or stop what holds it"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="glasswork-metrics", daemon=True
        )
        self._thread.start()
        logger.info("metrics on %s/metrics, liveness on %s/healthz", self.url, self.url)

    def close(self) -> None:
        """Stop serving (``/healthz`` stops answering with the loop)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def alive(self) -> bool:
        """Whether the watched loop runs a callback within ``liveness_timeout`` seconds (or
        its heartbeat is no later than that)."""
        loop = self._loop
        if isinstance(loop, Heartbeat):
            return loop.late() <= self.liveness_timeout
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        answered = threading.Event()
        try:
            loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # closed in the meantime
            return False
        return answered.wait(self.liveness_timeout)

    def _healthz(self, start_response: StartResponse) -> list[bytes]:
        if self.alive():
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [f"worker loop did not answer within {self.liveness_timeout:g}s\n".encode()]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the worker's log."""
