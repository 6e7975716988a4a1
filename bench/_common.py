"""Helpers shared by the benchmark scripts: timing, result rows, Redis, ports, machine info.

Every script in bench/ is runnable alone (``python bench/<name>.py``) and prints what it
measured; with ``--json PATH`` it also writes its rows there, which is how ``bench/run.py``
collects them. A row is a plain dict (see :func:`row`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

Row = dict[str, Any]


def row(
    benchmark: str,
    library: str,
    metric: str,
    value: float | None,
    unit: str,
    *,
    best: float | None = None,
    median: float | None = None,
    runs: int = 1,
    notes: str = "",
    status: str = "ok",
) -> Row:
    """One measured number. ``value`` is the headline (best of ``runs``); ``median`` is kept
    so a noisy run shows. ``status`` is ``ok``, ``skipped`` or ``missing``."""
    return {
        "benchmark": benchmark,
        "library": library,
        "metric": metric,
        "value": value,
        "unit": unit,
        "best": value if best is None else best,
        "median": median,
        "runs": runs,
        "notes": notes,
        "status": status,
    }


def skipped(benchmark: str, library: str, why: str, status: str = "skipped") -> Row:
    """A row for a peer (or one of ours) that could not be measured, and why."""
    return row(benchmark, library, "-", None, "", notes=why, status=status)


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every script takes: ``--quick`` and ``--json PATH``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return p


def emit(rows: list[Row], json_path: Path | None) -> None:
    """Print rows for a human and, when asked, write them as JSON for run.py."""
    for r in rows:
        if r["status"] != "ok":
            print(f"  {r['benchmark']:<22} {r['library']:<34} {r['status'].upper()}: {r['notes']}")
            continue
        med = "" if r["median"] is None else f" (median {fmt(r['median'])})"
        print(
            f"  {r['benchmark']:<22} {r['library']:<34} {r['metric']:<26} "
            f"{fmt(r['value'])} {r['unit']}{med}"
        )
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1))


def fmt(value: float | None) -> str:
    """Three significant figures, thousands separated: 12,300 / 45.6 / 0.101."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def best_and_median(samples: list[float], higher_is_better: bool) -> tuple[float, float]:
    best = max(samples) if higher_is_better else min(samples)
    return best, statistics.median(samples)


def time_calls(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls (GC collected before, left on)."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def run_json(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> Any:
    """Run one measurement in a fresh interpreter; what it printed last, as JSON. A
    RuntimeError carries the last line of its stderr when it fails."""
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(" ".join(proc.stderr.strip().splitlines()[-1:]) or "failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    return False


# -- Redis --------------------------------------------------------------------------------

REDIS_URL_ENV = "BENCH_REDIS_URL"


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL for the peers: ``$BENCH_REDIS_URL`` if set, else a private
    ``redis-server`` started on a free loopback port (no persistence) and stopped after, else
    the usual 127.0.0.1:6379 if it answers. Raises RuntimeError (the caller skips the peer)
    when there is no Redis to be had."""
    given = os.environ.get(REDIS_URL_ENV)
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        if _redis_answers(6379):
            yield "redis://127.0.0.1:6379/15"  # a database of its own: the runs flush it
            return
        raise RuntimeError(
            "no redis-server binary (Debian: apt-get install redis-server) and nothing "
            "answers on 127.0.0.1:6379"
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    cmd = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        workdir,
        "--logfile",
        os.path.join(workdir, "redis.log"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(port) or not _redis_answers(port):
            raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a server the benchmark started: politely, then firmly after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# -- machine --------------------------------------------------------------------------------


def machine_info() -> dict[str, str]:
    """CPU model, core count, OS and Python, for RESULTS.md."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


def package_versions(names: list[str]) -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# -- embedded throughput: one contender, one process, one run ----------------------------

EMBEDDED = "embedded throughput"
RunOnce = Callable[[int, Path], dict[str, float]]


def throughput_rows(label: str, runs: list[dict[str, float]], n: int, notes: str) -> list[Row]:
    """Rows (end to end, enqueue only, drain only; jobs/s) from several runs of ``n`` jobs."""
    rows = []
    for metric, key in (
        ("jobs/s end to end", None),
        ("jobs/s enqueue only", "enqueue_s"),
        ("jobs/s drain only", "drain_s"),
    ):
        rates = [n / (r["enqueue_s"] + r["drain_s"]) if key is None else n / r[key] for r in runs]
        best, median = best_and_median(rates, higher_is_better=True)
        rows.append(
            row(EMBEDDED, label, metric, best, "jobs/s", median=median, runs=len(runs), notes=notes)
        )
    return rows


def contender_main(label: str, run_once: RunOnce, notes: str, needs_redis: bool) -> int:
    """The command line of one embedded-throughput contender.

    ``--once N`` runs once in a scratch directory and prints ``{"enqueue_s", "drain_s"}``
    as JSON (how ``bench/embedded_throughput.py`` calls it, one fresh process per run);
    otherwise it runs a few times alone and prints its rows.
    """
    p = parser(f"embedded throughput: {label}")
    p.add_argument("--once", type=int, metavar="N", help="one run of N jobs, JSON to stdout")
    p.add_argument("--n", type=int, default=None, help="jobs per run")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args()
    if args.once:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            result = run_once(args.once, Path(tmp))
        print(json.dumps(result))
        return 0
    n = args.n or (2000 if args.quick else 20000)
    repeats = args.repeats or (1 if args.quick else 3)
    with contextlib.ExitStack() as stack:
        if needs_redis and REDIS_URL_ENV not in os.environ:
            try:
                os.environ[REDIS_URL_ENV] = stack.enter_context(redis_server())
            except RuntimeError as exc:
                emit([skipped(EMBEDDED, label, f"Redis unavailable: {exc}")], args.json)
                return 0
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
                runs.append(run_once(n, Path(tmp)))
    emit(throughput_rows(label, runs, n, notes), args.json)
    return 0


def redis_client() -> Any:
    """A client for ``$BENCH_REDIS_URL``, its database flushed (the runs start empty)."""
    import redis

    client = redis.Redis.from_url(os.environ[REDIS_URL_ENV])
    client.flushdb()
    return client
