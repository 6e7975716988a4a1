"""Run every benchmark, print the markdown table and write it to bench/RESULTS.md.

    python bench/run.py            # full run (about 45 minutes on 2 cores; PostgreSQL's
                                   # procrastinate peer is half of it)
    python bench/run.py --quick    # small sizes, a minute or two; for trying things out

It installs the peers first (bench/requirements.txt, into this interpreter; ``--no-install``
skips that), starts a private redis-server on loopback for RQ and Dramatiq (a peer whose
server cannot start is skipped with a line saying why), and runs each benchmark script in
its own process. Glasswork's "before" numbers come from the same run: the ``src/`` of
``BASELINE_REV`` (the tree before this round of issues) is unpacked with ``git archive`` and
benchmarked beside the current one. Nothing in RESULTS.md is typed by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    REDIS_URL_ENV,
    REPO_DIR,
    Row,
    fmt,
    machine_info,
    package_versions,
    redis_server,
    skipped,
)
from targets import TARGETS

#: The tree before this round of issues (8 to 13): the "before" numbers run its src/,
#: unpacked by git archive.
BASELINE_REV = "cee8d73"

ALL_STEPS = (
    "lambda,coldstart,embedded,status,priorities,limits,fairness,sqs,scheduler,memory,async,"
    "observability,outcomes,"
    "postgres,processes,profile"
)

PACKAGES = [
    "glasswork",
    "pydantic",
    "pydantic-core",
    "boto3",
    "moto",
    "aws-lambda-powertools",
    "huey",
    "rq",
    "dramatiq",
    "redis",
    "psycopg",
    "procrastinate",
    "pgqueuer",
    "asyncpg",
    "uvloop",
]


def install_peers() -> str:
    requirements = BENCH_DIR / "requirements.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return f"pip install -r bench/requirements.txt failed: {' '.join(tail)}"
    return ""


@contextlib.contextmanager
def baseline_src(rev: str | None) -> Iterator[str | None]:
    """The ``src`` directory of Glasswork at ``rev``, unpacked to a temporary directory."""
    if not rev:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = Path(tmp) / "src.tar"
        proc = subprocess.run(
            ["git", "-C", str(REPO_DIR), "archive", "-o", str(archive), rev, "src"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"  (no 'before' numbers: git archive {rev} failed: {proc.stderr.strip()})")
            yield None
            return
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield str(Path(tmp) / "src")


def run_script(
    script: str, args: list[str], env: dict[str, str], timeout: float = 900
) -> tuple[list[Row], str]:
    """Run one benchmark script with ``--json``; returns its rows and an error, if any."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH_DIR / script), *args, "--json", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-1:])
            return [], f"{script} failed: {tail}"
        return json.loads(path.read_text()), ""
    except subprocess.TimeoutExpired:
        return [], f"{script} timed out after {timeout:.0f}s"
    finally:
        path.unlink(missing_ok=True)


# -- the report ---------------------------------------------------------------------------


def find(rows: list[Row], benchmark: str, library: str, metric: str) -> Row | None:
    for r in rows:
        if (
            r["benchmark"] == benchmark
            and r["library"] == library
            and r["metric"] == metric
            and r["status"] == "ok"
        ):
            return r
    return None


def lib_status(rows: list[Row], benchmark: str, library: str) -> str:
    for r in rows:
        if r["benchmark"] == benchmark and r["library"] == library and r["status"] != "ok":
            return f"{r['status']}: {r['notes']}"
    return "not measured"


def cell(r: Row | None, unit: str = "") -> str:
    if r is None:
        return "n/a"
    return f"{fmt(r['value'])}{' ' + unit if unit else ''}"


def summary(rows: list[Row]) -> list[str]:
    """One line per target of bench/targets.py, with this run's numbers."""
    lines = [
        "| Issue | Benchmark | Glasswork | Peer | Peer's number | Ratio | Goal | Met? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in TARGETS:
        ours = find(rows, *t.ours)
        theirs = find(rows, *t.peer) if t.peer else None
        ratio = None
        if ours and theirs and ours["value"] and theirs["value"]:
            a, b = (ours, theirs) if t.ratio == "ours/peer" else (theirs, ours)
            ratio = a["value"] / b["value"]
        ours_cell = cell(ours, t.unit) if ours else lib_status(rows, t.ours[0], t.ours[1])
        peer_cell = "-"
        if t.peer:
            peer_cell = t.peer[1] if theirs else f"{t.peer[1]} ({lib_status(rows, *t.peer[:2])})"
        ratio_cell = f"{ratio:.2f}x ({t.ratio.replace('/', ' ÷ ')})" if ratio is not None else "-"
        verdict = t.met(ours["value"], ratio) if t.met is not None and ours else None
        if t.met is None:
            met = "-"
        elif verdict is None:
            met = "not measured"
        else:
            met = "yes" if verdict else "**no**"
        lines.append(
            f"| {t.issue} | {t.what} | {ours_cell} | {peer_cell} | "
            f"{cell(theirs, t.unit) if theirs else '-'} | {ratio_cell} | {t.goal} | {met} |"
        )
    return lines


def all_rows_table(rows: list[Row]) -> list[str]:
    lines = [
        "| Benchmark | Library | Metric | Best | Median | Runs | Notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(
                f"| {r['benchmark']} | {r['library']} | - | - | - | - | "
                f"**{r['status']}**: {r['notes']} |"
            )
            continue
        median = "-" if r["median"] is None else f"{fmt(r['median'])}"
        lines.append(
            f"| {r['benchmark']} | {r['library']} | {r['metric']} | {fmt(r['value'])} "
            f"{r['unit']} | {median} | {r['runs']} | {r['notes']} |"
        )
    return lines


def before_after(rows: list[Row]) -> list[str]:
    lines = [
        "| Benchmark | Library | Metric | Before | After | Change |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    found = False
    for before in rows:
        if before["status"] != "ok" or not before["library"].endswith(" (before)"):
            continue
        label = before["library"].removesuffix(" (before)")
        after = find(rows, before["benchmark"], label, before["metric"])
        if after is None:
            continue
        found = True
        lower_better = before["unit"] in ("µs", "MiB")
        gain = (
            before["value"] / after["value"] if lower_better else after["value"] / before["value"]
        )
        lines.append(
            f"| {before['benchmark']} | {label} | {before['metric']} | "
            f"{fmt(before['value'])} {before['unit']} | {fmt(after['value'])} {after['unit']} | "
            f"{gain:.2f}x {'faster' if gain >= 1 else 'slower'} |"
        )
    return lines if found else ["No 'before' numbers in this run."]


def profile_section(profiles: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for prof in profiles:
        lines.append(f"### {prof['title']}")
        lines.append("")
        if "samples" in prof:
            lines.append(
                f"{prof['samples']:,} py-spy samples of whichever thread held the GIL while "
                "the worker drained the queue. Top functions by own samples:"
            )
            lines.append("")
            lines.append("| Own samples % | Function |")
            lines.append("| --- | --- |")
            for f in prof["top"]:
                lines.append(f"| {f['share']:.1f} | `{f['name']}` |")
        else:
            lines.append(
                f"{prof['calls_per_message']:.0f} Python function calls per message; "
                f"{prof['us_per_message']:.1f} µs per message under cProfile. "
                "Top functions by own time:"
            )
            lines.append("")
            lines.append("| Own time % | Calls/message | Function |")
            lines.append("| --- | --- | --- |")
            for f in prof["top"]:
                calls = f["calls_per_message"]
                lines.append(f"| {f['share']:.1f} | {calls:.2f} | `{f['name']}` |")
        lines.append("")
    return lines


HOT_PATH_FILES = [
    "src/glasswork/jobs/execution.py",
    "src/glasswork/jobs/context.py",
    "src/glasswork/jobs/decoding.py",
    "src/glasswork/jobs/outcomes.py",
    "src/glasswork/jobs/message.py",
    "src/glasswork/jobs/definition.py",
    "src/glasswork/jobs/aws_lambda/handler.py",
    "src/glasswork/jobs/aws_lambda/batch.py",
    "src/glasswork/jobs/worker",
    "src/glasswork/jobs/worker.py",
    "src/glasswork/jobs/drivers/sqs/scheduler.py",
    "src/glasswork/jobs/drivers/sqlite.py",
    "src/glasswork/jobs/drivers/sqlite",
]


def hot_path_commits() -> list[str]:
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(REPO_DIR),
            "log",
            "--format=%h %s",
            f"{BASELINE_REV}..HEAD",
            "--",
            *HOT_PATH_FILES,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    commits = [f"- `{line[:7]}` {line[8:]}" for line in proc.stdout.splitlines()]
    return commits or ["- (none found: is this a shallow clone?)"]


def write_report(
    rows: list[Row],
    profiles: list[dict[str, Any]],
    problems: list[str],
    quick: bool,
    elapsed: float,
) -> str:
    info = machine_info()
    versions = package_versions(PACKAGES)
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick run (`--quick`: small sizes, not for quoting)" if quick else "full run"
    out = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run.py` ({mode}) on {now}, in {elapsed / 60:.1f} minutes, "
        f"at commit `{commit}`{' with uncommitted changes in src/' if dirty else ''}. "
        "Every number below was measured in this one run; ratios compare numbers from it.",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, {info['os']}",
        f"- Python: {info['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "- Method: the headline is the best repetition (the median is in the full table); "
        "contenders run interleaved, repetition by repetition, so noise from other work on "
        "the machine falls on all of them. See bench/README.md for what each row means.",
        "",
        "## Summary",
        "",
        *summary(rows),
        "",
        "## Before and after this round of issues",
        "",
        f'"Before" is `src/` at commit `{BASELINE_REV}` (before issues 8 to 13), unpacked '
        "with `git archive` and measured in this same run beside the current tree. The "
        "commits in between that touch the hot paths:",
        "",
        *hot_path_commits(),
        "",
        *before_after(rows),
        "",
        "## Every measurement",
        "",
        *all_rows_table(rows),
        "",
        "## Profiles",
        "",
        *profile_section(profiles),
    ]
    if problems:
        out += ["## Problems in this run", "", *[f"- {p}" for p in problems], ""]
    text = "\n".join(out).rstrip() + "\n"
    (BENCH_DIR / "RESULTS.md").write_text(text)
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for trying things out")
    p.add_argument("--no-install", action="store_true", help="do not pip install the peers")
    p.add_argument("--no-baseline", action="store_true", help="skip the 'before' numbers")
    p.add_argument(
        "--only",
        default=ALL_STEPS,
        help=f"comma-separated subset of {ALL_STEPS}",
    )
    args = p.parse_args()
    started = time.monotonic()
    only = set(args.only.split(","))
    problems: list[str] = []
    if not args.no_install:
        print("installing the peers (bench/requirements.txt) ...", flush=True)
        problem = install_peers()
        if problem:
            problems.append(problem)
            print("  " + problem)
    quick = ["--quick"] if args.quick else []
    env = dict(os.environ)
    rows: list[Row] = []
    profiles: list[dict[str, Any]] = []

    def step(
        script: str, extra: list[str], step_env: dict[str, str], timeout: float = 900
    ) -> list[Row]:
        print(f"\n## {script} {' '.join(extra)}", flush=True)
        got, error = run_script(script, [*quick, *extra], step_env, timeout)
        if error:
            problems.append(error)
            print("  " + error)
        return got

    with contextlib.ExitStack() as stack:
        if REDIS_URL_ENV not in env and "embedded" in only:
            try:
                env[REDIS_URL_ENV] = stack.enter_context(redis_server())
                print(f"redis: {env[REDIS_URL_ENV]}")
            except RuntimeError as exc:
                problems.append(f"Redis peers skipped: {exc}")
                print(f"  Redis peers skipped: {exc}")
        before = None if args.no_baseline else BASELINE_REV
        with baseline_src(before) as old:
            old_env = dict(env, PYTHONPATH=old) if old else None
            if "lambda" in only:
                rows += step("lambda_dispatch.py", [], env)
                if old_env:
                    rows += step(
                        "lambda_dispatch.py",
                        ["--contenders", "glasswork", "--label-suffix", " (before)"],
                        old_env,
                    )
            if "coldstart" in only:
                rows += step("cold_start.py", [], env)
            if "embedded" in only:
                extra = ["--baseline-src", old] if old else []
                if REDIS_URL_ENV not in env:
                    extra += ["--contenders", "glasswork,glasswork-many,huey"]
                    rows += [
                        skipped("embedded throughput", label, "no Redis server could be started")
                        for label in ("RQ SimpleWorker (Redis)", "Dramatiq Worker (Redis)")
                    ]
                rows += step("embedded_throughput.py", extra, env)
            if "status" in only:
                rows += step("status_cost.py", [], env)
            if "priorities" in only:
                rows += step("priority_claims.py", [], env)
            if "limits" in only:
                rows += step("limits_cost.py", [], env)
                rows += step("sqs_limits_cost.py", [], env)
            if "fairness" in only:
                rows += step("fairness.py", [], env)
            if "sqs" in only:
                rows += step("sqs_requests.py", [], env)
            if "scheduler" in only:
                rows += step("scheduler_requests.py", ["--baseline-src", old] if old else [], env)
            if "memory" in only:
                rows += step("memory.py", [], env)
            if "async" in only:
                rows += step("async_enqueue.py", [], env)
            if "observability" in only:
                rows += step("observability_overhead.py", [], env)
            if "outcomes" in only:
                rows += step("outcome_log.py", [], env)
            if "postgres" in only:
                # procrastinate drains ~80 jobs/s: most of this step's ~30 minutes.
                rows += step("postgres_queue.py", [], env, timeout=3600)
            if "processes" in only:
                rows += step("worker_processes.py", [], env)
            if "profile" in only:
                for step_env, suffix in ((env, ""), (old_env, " (before)")):
                    if step_env is None:
                        continue
                    got = step("profile_hot_paths.py", ["--title-suffix", suffix], step_env)
                    profiles += [r["profile"] for r in got if "profile" in r]
    text = write_report(rows, profiles, problems, args.quick, time.monotonic() - started)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
