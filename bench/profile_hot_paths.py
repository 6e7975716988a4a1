"""cProfile of the two hot paths: the Lambda handler on a 10-record SQS event, and the
embedded worker draining the SQLite queue. Prints the top functions by own time and the
number of Python function calls per message (a machine-independent measure of overhead).

The Lambda path is single-threaded, so cProfile sees all of it. The worker runs jobs on
threads cProfile does not follow (its control thread owns the driver), so the drain is
sampled with py-spy (``--gil``: the thread holding the GIL, i.e. where the Python time goes,
all threads) when py-spy is installed; otherwise it falls back to cProfile of the control
thread.

Run: ``python bench/profile_hot_paths.py [--quick] [--paths lambda,embedded]``.
"""

from __future__ import annotations

import cProfile
import json
import logging
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, parser
from workload import PAYLOAD, Payload, noop, sqs_bench_event

TOP = 12


def short(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    path = Path(filename)
    parts = path.parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            rel = "/".join(parts[i + 1 :])
            if anchor == "lib" and rel.startswith("python3"):
                rel = rel.split("/", 1)[1]
            return f"{rel}:{line}({name})"
    return f"{path.name}:{line}({name})"


def summarize(title: str, prof: cProfile.Profile, messages: int, wall: float) -> dict[str, Any]:
    stats = pstats.Stats(prof)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total_calls = sum(v[1] for v in table.values())
    total_time = sum(v[2] for v in table.values()) or 1e-9
    top = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:TOP]
    return {
        "title": title,
        "calls_per_message": total_calls / messages,
        "us_per_message": wall / messages * 1e6,
        "top": [
            {
                "name": short(func),
                "share": 100 * v[2] / total_time,
                "calls_per_message": v[1] / messages,
            }
            for func, v in top
        ],
    }


def profiled(fn: Callable[[], Any]) -> tuple[cProfile.Profile, float]:
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    fn()
    prof.disable()
    return prof, time.perf_counter() - start


def profile_lambda(events: int) -> dict[str, Any]:
    from lambda_dispatch import RECORDS, glasswork_handler

    handler = glasswork_handler()
    event = sqs_bench_event(RECORDS)
    for _ in range(100):
        handler(event, None)

    def run() -> None:
        for _ in range(events):
            handler(event, None)

    prof, wall = profiled(run)
    return summarize(
        "Lambda dispatch: bootstrap_worker, 10-record event", prof, events * RECORDS, wall
    )


def profile_embedded(n: int) -> dict[str, Any] | str:
    from embedded_throughput import missing_pieces

    why = missing_pieces()
    if why:
        return why
    spy = shutil.which("py-spy")
    if spy:
        got = profile_embedded_pyspy(spy, n)
        if got is not None:
            return got
    return profile_embedded_cprofile(n)


def profile_embedded_pyspy(spy: str, n: int) -> dict[str, Any] | None:
    """Sample a fresh ``embedded_throughput.py --once N`` with py-spy; keep the drain."""
    with tempfile.TemporaryDirectory(prefix="bench-spy-") as tmp:
        raw = Path(tmp) / "raw.txt"
        cmd = [spy, "record", "--gil", "--threads", "--format", "raw", "--rate", "1000"]
        cmd += ["--output", str(raw), "--", sys.executable]
        cmd += [str(BENCH_DIR / "embedded_throughput.py"), "--once", str(n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0 or not raw.exists():
            print(f"  py-spy failed ({proc.stderr.strip()[-200:]}); using cProfile instead")
            return None
        lines = raw.read_text().splitlines()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        # The drain: the control thread inside drain(), and the worker's own threads (job
        # threads, the async jobs' loop), which exist only while it runs.
        thread = frames[0].partition(": ")[2]
        if not thread.startswith("glasswork-") and not any(f.startswith("drain (") for f in frames):
            continue
        total += int(count)
        own[_spy_name(frames[-1])] += int(count)
    if not total:
        return None
    return {
        "title": "Embedded drain: Worker over SQLiteQueueDriver (py-spy, all threads)",
        "samples": total,
        "top": [
            {"name": name, "share": 100 * c / total, "calls_per_message": None}
            for name, c in own.most_common(TOP)
        ],
    }


def _spy_name(frame: str) -> str:
    """``func (asyncio/tasks.py:381)`` → ``asyncio/tasks.py(func)``: by function, not line."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rpartition(":")[0]
    return f"{path}({name})" if path else name


def profile_embedded_cprofile(n: int) -> dict[str, Any]:
    from embedded_throughput import drain, make_worker

    from glasswork import define_module
    from glasswork.jobs import JobService, SQLiteQueueDriver, define_job

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    module = define_module("bench", jobs=[job])
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        driver = SQLiteQueueDriver(str(Path(tmp) / "jobs.db"))
        JobService(driver).enqueue_many(job, [PAYLOAD] * n)
        worker = make_worker(module, driver)
        prof, wall = profiled(lambda: drain(worker))
        close = getattr(driver, "close", None)
        if close:
            close()
    return summarize(
        "Embedded drain: Worker over SQLiteQueueDriver (cProfile, control thread only)",
        prof,
        n,
        wall,
    )


def main(argv: list[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--paths", default="lambda,embedded")
    p.add_argument("--title-suffix", default="")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out: list[dict[str, Any]] = []
    paths = args.paths.split(",")
    results: list[dict[str, Any] | str] = []
    if "lambda" in paths:
        results.append(profile_lambda(300 if args.quick else 2000))
    if "embedded" in paths:
        results.append(profile_embedded(2000 if args.quick else 20000))
    for result in results:
        if isinstance(result, str):
            print(f"  embedded drain profile: {result}")
            continue
        result["title"] += args.title_suffix
        if "samples" in result:
            print(f"\n{result['title']}: {result['samples']} samples")
        else:
            print(
                f"\n{result['title']}: {result['calls_per_message']:.0f} calls/message, "
                f"{result['us_per_message']:.1f} µs/message under cProfile"
            )
        for f in result["top"]:
            per = "" if f["calls_per_message"] is None else f"{f['calls_per_message']:6.2f}/msg"
            print(f"  {f['share']:5.1f}%  {per:>10}  {f['name']}")
        out.append({"profile": result})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
