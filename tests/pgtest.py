"""The PostgreSQL server the tests use, found or started on first use, and a fresh schema per
test, dropped afterwards.

:func:`dsn` looks, once per process, in this order:

1. ``$GLASSWORK_TEST_POSTGRES`` (a server you name; it must answer; processes the tests start
   find the tests' own server this way);
2. ``postgresql://postgres@127.0.0.1:5432/test`` (trust auth), what ``.ci/run`` provides;
3. a throwaway server of the tests' own: ``initdb`` into a temporary directory and
   ``pg_ctl start`` on a free loopback port, from the binaries of a PostgreSQL installation
   (Debian's ``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``, ``PATH``) or of the
   ``pgserver`` wheel in the dev extra. PostgreSQL refuses to run as root, so as root the
   server runs as the ``postgres`` user when there is one, else ``nobody``. It is stopped
   and deleted when the test process exits.

When none of these works, a test that needs PostgreSQL is skipped with the reason (one line
in pytest's summary), or fails under ``CI``, where a skip would hide a broken setup.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from glob import glob
from pathlib import Path
from typing import Any

import psycopg
import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: Whether the running test is marked ``postgres`` (set by tests/conftest.py): a test that is
#: not must not need the server, so that ``pytest -m "not postgres"`` runs without one.
in_marked_test = True
_found: tuple[str, Callable[[], None] | None] | str | None = None  # (dsn, restart) or why not


def dsn() -> str:
    """The URL of the tests' PostgreSQL database; skips (fails under ``CI``) without one."""
    if not in_marked_test:
        pytest.fail("this test uses PostgreSQL: mark it @pytest.mark.postgres", pytrace=False)
    return _server()[0]


def connect(**kwargs: object) -> psycopg.Connection:
    return psycopg.connect(dsn(), **kwargs)  # type: ignore[arg-type]


def restart() -> None:
    """Restart the tests' PostgreSQL server (``$GLASSWORK_TEST_POSTGRES_RESTART`` for a server
    named by ``$GLASSWORK_TEST_POSTGRES``, the Debian cluster on 5432, or the tests' own)."""
    restart_server = _server()[1]
    if restart_server is None:
        _unavailable("cannot restart this PostgreSQL server: set GLASSWORK_TEST_POSTGRES_RESTART")
    else:
        restart_server()


@contextmanager
def fresh_schema(prefix: str = "gw") -> Iterator[str]:
    """A schema name no other test uses; the schema (if created) is dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def url(schema: str, **options: object) -> str:
    base = dsn()
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    return f"{base}{'&' if '?' in base else '?'}{query}"


# -- finding or starting the server ----------------------------------------------------------


def _server() -> tuple[str, Callable[[], None] | None]:
    global _found
    if _found is None:
        _found = _find()
    if isinstance(_found, str):
        _unavailable(_found)
    assert not isinstance(_found, str)
    return _found


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL: {why} (CI provides one: see .ci/run)", pytrace=False)
    pytest.skip(f"PostgreSQL: {why}")


def _find() -> tuple[str, Callable[[], None] | None] | str:
    named = os.environ.get("GLASSWORK_TEST_POSTGRES")
    if named:
        problem = _problem(named)
        if problem:
            return f"GLASSWORK_TEST_POSTGRES={named} does not answer: {problem}"
        command = os.environ.get("GLASSWORK_TEST_POSTGRES_RESTART")
        return named, (lambda: _run(shlex.split(command))) if command else None
    if not _problem(DEFAULT_DSN):
        return DEFAULT_DSN, _debian_restart()
    try:
        server = LocalServer.start()
    except _CannotStart as exc:
        return f"no server answers on 127.0.0.1:5432 and none could be started here: {exc}"
    # Processes the tests start (workers, racing producers) use this server too.
    os.environ["GLASSWORK_TEST_POSTGRES"] = server.dsn
    return server.dsn, server.restart


def _problem(url: str) -> str:
    """Why ``url`` takes no connection; '' when it does."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ""


def _debian_restart() -> Callable[[], None] | None:
    if not shutil.which("pg_ctlcluster") or not os.path.isdir("/etc/postgresql"):
        return None
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return lambda: _run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"])


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, timeout=120)


class _CannotStart(Exception):
    pass


class LocalServer:
    """A PostgreSQL server of the tests' own in a temporary directory (see the module)."""

    def __init__(self, bindir: Path, root: Path, port: int, user: pwd.struct_passwd | None):
        self.bindir, self.root, self.port, self.user = bindir, root, port, user
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/test"

    @classmethod
    def start(cls) -> LocalServer:
        candidates = _binary_dirs()
        if not candidates:
            raise _CannotStart(
                "no PostgreSQL binaries (install PostgreSQL, e.g. apt-get install postgresql, "
                "or pip install -e '.[dev]' on a platform with a pgserver wheel)"
            )
        user = _unprivileged_user() if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="glasswork-pg-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        problems = []
        for bindir in candidates:
            server = cls(bindir, root, _free_port(), user)
            try:
                server._launch()
            except _CannotStart as exc:
                problems.append(f"{bindir}: {exc}")
                continue
            atexit.register(server.stop)
            return server
        raise _CannotStart("; ".join(problems))

    def _launch(self) -> None:
        if self.user is not None and self._as_user([str(self.bindir / "postgres"), "-V"]):
            # The binaries sit where the server's user cannot read them (a virtualenv under
            # /root, say): run a copy of the installation from the temporary directory.
            prefix = self.root / "install"
            shutil.copytree(self.bindir.parent, prefix, symlinks=True, dirs_exist_ok=True)
            self.bindir = prefix / "bin"
        data = self.root / "data"
        if data.exists():
            shutil.rmtree(data)
        initdb = [self._bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        self._checked([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"])
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c fsync=off -c full_page_writes=off"
        )
        self._pg_ctl("-o", options, "start")
        with psycopg.connect(self.dsn.replace("/test", "/postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")

    def restart(self) -> None:
        self._pg_ctl("-m", "fast", "restart")

    def stop(self) -> None:
        with suppress(_CannotStart, subprocess.TimeoutExpired):
            self._pg_ctl("-m", "immediate", "stop")

    def _pg_ctl(self, *args: str) -> None:
        # The server logs to a file (-l): were it to inherit our output instead, the call
        # would wait for a server that never closes it.
        data, log = str(self.root / "data"), str(self.root / "log")
        self._checked([self._bin("pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60", *args])

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _checked(self, command: list[str]) -> None:
        problem = self._as_user(command)
        if problem:
            raise _CannotStart(problem)

    def _as_user(self, command: list[str]) -> str:
        """Run ``command`` as the server's user; '' on success, else what went wrong."""
        user = self.user
        # Dropped by subprocess itself, not by a preexec_fn: that would run the parent's
        # at-fork hooks in the child (OpenTelemetry's fail when it runs at exit).
        as_user: dict[str, Any] = (
            {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        )

        env = {**os.environ, "LC_ALL": "C"}
        env.pop("PGDATA", None)
        with tempfile.TemporaryFile() as output:
            try:
                done = subprocess.run(
                    command,
                    stdout=output,
                    stderr=output,
                    timeout=120,
                    cwd=self.root,
                    env=env,
                    **as_user,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                return f"{Path(command[0]).name}: {exc}"
            if done.returncode != 0:
                output.seek(0)
                said = output.read().decode(errors="replace").strip()[-500:]
                return f"{Path(command[0]).name} exited with {done.returncode}: {said}"
        return ""


def _binary_dirs() -> list[Path]:
    """Directories holding initdb, pg_ctl and postgres, best first."""
    found: list[Path] = []
    debian = sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version(p), reverse=True)
    places = [*debian, *glob("/usr/pgsql-*/bin")]
    if shutil.which("pg_config"):
        with suppress(OSError, subprocess.SubprocessError):
            places.append(
                subprocess.run(
                    ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10
                ).stdout.strip()
            )
    if shutil.which("initdb"):
        places.append(str(Path(shutil.which("initdb") or "").parent))
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        places.append(str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"))
    for place in places:
        path = Path(place)
        if path not in found and all(
            (path / b).is_file() for b in ("initdb", "pg_ctl", "postgres")
        ):
            found.append(path)
    return found


def _version(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise _CannotStart("running as root, and there is no postgres or nobody user to run it as")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The PostgreSQL case of a test parametrised over drivers, marked ``postgres``.
POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.postgres)
#: The same, left out of the quick loop (``pytest -m "not slow"``).
SLOW_POSTGRESQL = pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.slow])
