"""A TCP proxy in front of the tests' PostgreSQL server whose open connections can be made
half-open, as after a failover: :meth:`Proxy.blackhole` stops forwarding on every connection
it holds (no RST, no FIN: the sockets stay open and this side's kernel keeps acknowledging),
while connections made afterwards are forwarded as usual."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgtest import dsn


class Proxy:
    """Listens on a free port of 127.0.0.1 and forwards each connection to the server of
    the tests' server (``pgtest.dsn()``), a thread per direction."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._closed = False
        threading.Thread(target=self._accept, name="pgproxy", daemon=True).start()

    def dsn(self, **params: object) -> str:
        """The tests' server through this proxy (with the libpq ``params`` given)."""
        return make_conninfo(dsn(), host="127.0.0.1", hostaddr=None, port=self.port, **params)

    def url(self, schema: str, **options: object) -> str:
        """A ``postgresql://`` driver URL through this proxy (as pgtest's ``url``)."""
        params = conninfo_to_dict(dsn())
        user = quote(str(params.get("user") or "postgres"), safe="")
        dbname = quote(str(params.get("dbname") or "postgres"), safe="")
        if params.get("password"):
            options = {"password": params["password"], **options}
        query = urlencode({"schema": schema, **options}, quote_via=quote)
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}?{query}"

    def blackhole(self) -> int:
        """Stop forwarding on every connection open now (they stay open); returns how many."""
        with self._lock:
            links = [link for link in self._links if not link.done]
            for link in links:
                link.blackholed = True
        return len(links)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        self._listener.close()
        for link in links:
            link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = _connect_upstream()
            except OSError:
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                if self._closed:
                    link.close()
                    return
                self._links = [x for x in self._links if not x.done]
                self._links.append(link)
            link.start()


class _Link:
    """One proxied connection."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.blackholed = False
        self.done = False

    def start(self) -> None:
        for source, target in ((self.client, self.server), (self.server, self.client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.blackholed:  # blackholed: read and drop, so nothing pushes back
                    target.sendall(data)
        except OSError:
            pass
        if not self.blackholed:
            self.close()

    def close(self) -> None:
        self.done = True
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.close()


def _connect_upstream() -> socket.socket:
    params = conninfo_to_dict(dsn())
    host = str(params.get("hostaddr") or params.get("host") or "/var/run/postgresql")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.connect(os.path.join(host, f".s.PGSQL.{port}"))
        return unix
    tcp = socket.create_connection((host, port), timeout=10)
    tcp.settimeout(None)
    return tcp


@contextlib.contextmanager
def proxy() -> Iterator[Proxy]:
    p = Proxy()
    try:
        yield p
    finally:
        p.close()


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield int(listener.getsockname()[1])
