"""Run every benchmark, print the markdown table and write it to bench/RESULTS.md.

    python bench/run.py            # full run (~10 minutes on 2 cores)
    python bench/run.py --quick    # small sizes, a minute or two; for trying things out

It installs the peers first (bench/requirements.txt, into this interpreter; ``--no-install``
skips that), starts a private redis-server on loopback for RQ and Dramatiq (a peer whose
server cannot start is skipped with a line saying why), and runs each benchmark script in
its own process. Glasswork's "before" numbers come from the same run: the ``src/`` of
``BASELINE_REV`` (the tree before the hot-path work) is unpacked with ``git archive`` and
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

#: The commit before the hot-path work (the core, the SQLite driver and the worker as their
#: authors landed them): the "before" numbers run its src/, unpacked by git archive.
BASELINE_REV = "f05d330"

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
    lines = [
        "| Benchmark | Glasswork | Peer | Peer's number | Ratio | Target | Met? |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def add(
        name: str,
        ours: Row | None,
        ours_missing: str,
        peer: str,
        theirs: Row | None,
        unit: str,
        ratio: float | None,
        ratio_text: str,
        target: str,
        met: bool | None,
    ) -> None:
        ours_cell = cell(ours, unit) if ours else ours_missing
        theirs_cell = cell(theirs, unit) if theirs else ("-" if peer == "-" else "n/a")
        ratio_cell = ratio_text.format(ratio) if ratio is not None else "-"
        met_cell = "-" if met is None else ("yes" if met else "**no**")
        lines.append(
            f"| {name} | {ours_cell} | {peer} | {theirs_cell} | {ratio_cell} | {target} "
            f"| {met_cell} |"
        )

    # Lambda dispatch.
    lam = "lambda dispatch"
    ours = find(rows, lam, "Glasswork bootstrap_worker", "µs per message")
    missing = lib_status(rows, lam, "Glasswork bootstrap_worker")
    add(
        "Lambda dispatch, µs per message (lower is better)",
        ours,
        missing,
        "-",
        None,
        "µs",
        None,
        "",
        "≤ 25 µs",
        ours["value"] <= 25 if ours else None,
    )
    for peer in ("Powertools BatchProcessor", "Powertools BatchProcessor(model=)"):
        theirs = find(rows, lam, peer, "µs per message")
        ratio = theirs["value"] / ours["value"] if ours and theirs else None
        first = peer == "Powertools BatchProcessor"
        met = ratio >= 3 if first and ratio is not None else None
        add(
            "Lambda dispatch, µs per message (lower is better)",
            ours,
            missing,
            peer,
            theirs,
            "µs",
            ratio,
            "{:.2f}x (peer ÷ ours)",
            "≥ 3x lower than Powertools" if first else "-",
            met,
        )
    floor = find(rows, lam, "floor (bare pydantic loop)", "µs per message")
    if floor:
        ratio = floor["value"] / ours["value"] if ours else None
        add(
            "Lambda dispatch, µs per message",
            ours,
            missing,
            "floor: pydantic validation alone",
            floor,
            "µs",
            ratio,
            "{:.2f}x (floor ÷ ours)",
            "-",
            None,
        )

    # Embedded throughput.
    emb = "embedded throughput"
    for ours_label in ("Glasswork Worker (SQLite)", "Glasswork Worker (SQLite), enqueue_many"):
        ours = find(rows, emb, ours_label, "jobs/s end to end")
        missing = lib_status(rows, emb, ours_label)
        if ours_label == "Glasswork Worker (SQLite)":
            add(
                f"{ours_label}: jobs/s end to end (higher is better)",
                ours,
                missing,
                "-",
                None,
                "jobs/s",
                None,
                "",
                "≥ 5,000 jobs/s",
                ours["value"] >= 5000 if ours else None,
            )
        for peer in ("Huey SqliteHuey", "RQ SimpleWorker (Redis)", "Dramatiq Worker (Redis)"):
            theirs = find(rows, emb, peer, "jobs/s end to end")
            ratio = ours["value"] / theirs["value"] if ours and theirs else None
            headline = ours_label == "Glasswork Worker (SQLite)" and peer == "Huey SqliteHuey"
            met = ratio >= 2 if headline and ratio is not None else None
            peer_cell = peer if theirs else f"{peer} ({lib_status(rows, emb, peer)})"
            add(
                f"{ours_label}: jobs/s end to end (higher is better)",
                ours,
                missing,
                peer_cell,
                theirs,
                "jobs/s",
                ratio,
                "{:.2f}x (ours ÷ peer)",
                "≥ 2x SqliteHuey" if headline else "-",
                met,
            )

    # SQS.
    sqs = "sqs enqueue_many"
    per_job = find(rows, sqs, "Glasswork SQSQueueDriver", "HTTP requests per job")
    rate = find(rows, sqs, "Glasswork SQSQueueDriver", "jobs/s enqueue")
    missing = lib_status(rows, sqs, "Glasswork SQSQueueDriver")
    add(
        "SQS enqueue_many (moto server): HTTP requests per job",
        per_job,
        missing,
        "-",
        None,
        "",
        None,
        "",
        "≤ 0.11",
        per_job["value"] <= 0.11 if per_job else None,
    )
    add(
        "SQS enqueue_many (moto server): jobs/s",
        rate,
        missing,
        "-",
        None,
        "jobs/s",
        None,
        "",
        "-",
        None,
    )
    cpu = find(rows, sqs, "Glasswork SQSQueueDriver", "client CPU per job")
    add(
        "SQS enqueue_many: client CPU per job (moto's time excluded)",
        cpu,
        missing,
        "-",
        None,
        "µs",
        None,
        "",
        "-",
        None,
    )

    # Memory.
    mem = "memory"
    for metric in ("peak RSS while draining", "RSS growth over imports"):
        ours = find(rows, mem, "Glasswork Worker (SQLite)", metric)
        theirs = find(rows, mem, "Huey SqliteHuey", metric)
        pending = (ours or theirs or {}).get("pending", 100_000)
        add(
            f"Worker with {pending:,} pending SQLite jobs: {metric} (lower is better)",
            ours,
            lib_status(rows, mem, "Glasswork Worker (SQLite)"),
            "Huey SqliteHuey" if theirs else f"Huey ({lib_status(rows, mem, 'Huey SqliteHuey')})",
            theirs,
            "MiB",
            theirs["value"] / ours["value"] if ours and theirs else None,
            "{:.2f}x (peer ÷ ours)",
            "-",
            None,
        )
    return lines


def target_notes(rows: list[Row]) -> list[str]:
    """What the measured numbers say about targets a reader might misjudge (computed here)."""
    lam = "lambda dispatch"
    ours = find(rows, lam, "Glasswork bootstrap_worker", "µs per message")
    peer = find(rows, lam, "Powertools BatchProcessor", "µs per message")
    floor = find(rows, lam, "floor (bare pydantic loop)", "µs per message")
    if not (ours and peer and floor):
        return []
    third = peer["value"] / 3
    return [
        f"Lambda dispatch in this run: Powertools spends {fmt(peer['value'])} µs per message, "
        f"of which {fmt(floor['value'])} µs is the pydantic parse and validation that every "
        f'contender does (the floor row). "3x lower than Powertools" would be '
        f"{fmt(third)} µs per message, which is "
        + (
            "below that floor: no handler that validates the payload can reach it. "
            if third < floor["value"]
            else "above that floor. "
        )
        + f"Glasswork spends {fmt(ours['value'] - floor['value'])} µs above the floor, "
        f"Powertools {fmt(peer['value'] - floor['value'])} µs.",
        "",
    ]


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
    "src/glasswork/jobs/message.py",
    "src/glasswork/jobs/definition.py",
    "src/glasswork/jobs/lambda_handler.py",
    "src/glasswork/jobs/worker.py",
    "src/glasswork/jobs/drivers/sqlite.py",
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
        *target_notes(rows),
        "## Before and after the hot-path work",
        "",
        f'"Before" is `src/` at commit `{BASELINE_REV}` (before the hot-path work), unpacked '
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
        default="lambda,embedded,sqs,memory,profile",
        help="comma-separated subset of lambda,embedded,sqs,memory,profile",
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

    def step(script: str, extra: list[str], step_env: dict[str, str]) -> list[Row]:
        print(f"\n## {script} {' '.join(extra)}", flush=True)
        got, error = run_script(script, [*quick, *extra], step_env)
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
            if "embedded" in only:
                extra = ["--baseline-src", old] if old else []
                if REDIS_URL_ENV not in env:
                    extra += ["--contenders", "glasswork,glasswork-many,huey"]
                    rows += [
                        skipped("embedded throughput", label, "no Redis server could be started")
                        for label in ("RQ SimpleWorker (Redis)", "Dramatiq Worker (Redis)")
                    ]
                rows += step("embedded_throughput.py", extra, env)
            if "sqs" in only:
                rows += step("sqs_requests.py", [], env)
            if "memory" in only:
                rows += step("memory.py", [], env)
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
