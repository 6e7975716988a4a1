"""Dashboard dead-letter pages over 10,000 dead letters: how long a page takes to render.

A fresh SQLite file and a fresh PostgreSQL schema (when the server at
``$BENCH_POSTGRES_DSN``, default the local test database, answers) each get N dead letters
(10,000; 1,000 with ``--quick``) under a handful of reasons, across two queues. For each,
the dashboard app (``create_app``) renders, R times interleaved:

* *first page*: ``/dead-letters``, the newest 100, the count and the groups by reason;
* *deep page*: the 100 past a cursor near the oldest (a keyset page: no OFFSET to walk);
* *filtered*: ``?queue=emails&q=421`` (the reason text is found by reading the matches);
* *one group*: ``?reason=...``, the page a group's "Show" opens;
* *confirm a group*: the confirmation page of "Redrive all" of the largest group.

Times are server-side, through Starlette's TestClient (driver queries and the template,
no network); with Chromium at /usr/bin/chromium and Playwright installed, the first page is
also loaded in the browser from a uvicorn server (navigation to the ``load`` event).
Headline: best of R; median beside it.

Run: ``python bench/dashboard_dead_letters.py [--quick] [--n N] [--repeats R] [--json PATH]``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import best_and_median, emit, free_port, parser, row, wait_for_port

BENCHMARK = "dashboard dead letters"
DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = "/usr/bin/chromium"
REASONS = (
    "SMTP 421 service not available, try again later",
    "TimeoutError: the payment provider took more than 30s",
    "PermanentJobError: card declined",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "ValueError: invalid literal for int() with base 10: 'abc'",
)


@contextlib.contextmanager
def fresh_driver(kind: str) -> Iterator[Any]:
    """A driver on a fresh SQLite file or PostgreSQL schema, removed afterwards."""
    if kind == "sqlite":
        from glasswork.jobs import SQLiteQueueDriver

        with tempfile.TemporaryDirectory(prefix="bench-dead-") as tmp:
            driver = SQLiteQueueDriver(str(Path(tmp) / "jobs.db"))
            yield driver
            driver.close()
        return
    import psycopg

    from glasswork.jobs.drivers.postgres import PostgresQueueDriver

    schema = f"bench_dead_{uuid.uuid4().hex[:10]}"
    try:
        with PostgresQueueDriver(DSN, schema=schema) as driver:
            yield driver
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def fill(driver: Any, n: int) -> None:
    """N dead letters, the first reason most frequent, on queues emails and payments."""
    from glasswork.jobs import JobMessage

    rows = []
    for i in range(n):
        queue = "emails" if i % 3 else "payments"
        message = JobMessage.create("send-receipt", {"order_id": i}, queue=queue)
        reason = REASONS[0] if i % 2 else REASONS[i % len(REASONS)]
        rows.append((queue, message.job_name, message.job_id, message.encode(), reason))
    if driver.name == "sqlite":
        now = time.time()
        with driver._transaction() as conn:
            conn.executemany(
                "INSERT INTO glasswork_dead_letters (queue, job_name, job_id, body, reason, "
                "failed_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(*r, now - n + i) for i, r in enumerate(rows)],
            )
        return
    import psycopg

    with psycopg.connect(DSN) as conn, conn.cursor() as cursor:
        cursor.executemany(
            f'INSERT INTO "{driver.schema}".glasswork_dead_letters '
            "(queue, job_name, job_id, body, reason) VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
        conn.execute(f'ANALYZE "{driver.schema}".glasswork_dead_letters')


def pages(driver: Any) -> dict[str, str]:
    """The addresses measured (the deep cursor and the group's from the driver)."""
    from urllib.parse import urlencode

    from glasswork.jobs.drivers.records import DeadLetterQuery

    first = driver.dead_letter_page(DeadLetterQuery(), None, 100)
    oldest = int(min(r.id for r in driver.dead_letters(limit=200)))
    group = first.groups[0]
    return {
        "first page": "/dead-letters",
        "deep page": f"/dead-letters?cursor={oldest + 150}",
        "filtered": "/dead-letters?queue=emails&q=421",
        "one group": "/dead-letters?" + urlencode({"reason": group.reason}),
        "confirm a group": "/dead-letters/confirm-all?"
        + urlencode({"action": "redrive", "reason": group.reason, "newest": group.newest}),
    }


def server_times(driver: Any, repeats: int) -> dict[str, list[float]]:
    from starlette.testclient import TestClient

    from glasswork.dashboard import create_app

    client = TestClient(create_app(driver), base_url="http://127.0.0.1")
    addresses = pages(driver)
    samples: dict[str, list[float]] = {name: [] for name in addresses}
    for path in addresses.values():  # warm up: connections, templates
        assert client.get(path).status_code == 200, path
    for _ in range(repeats):
        for name, path in addresses.items():
            start = time.perf_counter()
            answer = client.get(path)
            samples[name].append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
    return samples


def browser_times(driver: Any, repeats: int) -> list[float] | str:
    """Milliseconds to load the first page in Chromium, or why it could not be measured."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}"
    try:
        import uvicorn
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        return f"{exc.name} is not installed"
    from glasswork.dashboard import create_app

    port = free_port()
    config = uvicorn.Config(create_app(driver), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not wait_for_port(port):
            return "the dashboard did not start"
        url = f"http://127.0.0.1:{port}/dead-letters"
        samples = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless"]
            )
            page = browser.new_page()
            page.goto(url)  # warm up
            for _ in range(repeats):
                start = time.perf_counter()
                page.goto(url, wait_until="load")
                samples.append((time.perf_counter() - start) * 1000)
            assert page.locator("tr[data-id]").count() == 100
            browser.close()
        return samples
    finally:
        server.should_exit = True
        thread.join(10)


def postgres_answers() -> str | None:
    """Why PostgreSQL cannot be measured, or None."""
    try:
        import psycopg

        psycopg.connect(DSN, connect_timeout=3).close()
    except Exception as exc:  # not installed, no server
        return f"no PostgreSQL at {DSN}: {exc}".splitlines()[0]
    return None


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="dead letters (default 10,000)")
    p.add_argument("--repeats", type=int, default=None, help="renders of each page")
    args = p.parse_args()
    n = args.n or (1_000 if args.quick else 10_000)
    repeats = args.repeats or (3 if args.quick else 10)
    rows = []
    for kind, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        why = postgres_answers() if kind == "postgresql" else None
        if why is not None:
            rows.append(
                row(BENCHMARK, f"glasswork {name}", "-", None, "", notes=why, status="skipped")
            )
            continue
        with fresh_driver(kind) as driver:
            fill(driver, n)
            for page, samples in server_times(driver, repeats).items():
                best, median = best_and_median(samples, higher_is_better=False)
                rows.append(
                    row(
                        BENCHMARK,
                        f"glasswork {name}, {n:,} dead",
                        f"{page} (server)",
                        best,
                        "ms",
                        median=median,
                        runs=repeats,
                    )
                )
            loaded = browser_times(driver, repeats)
            if isinstance(loaded, str):
                rows.append(
                    row(
                        BENCHMARK,
                        f"glasswork {name}",
                        "first page (Chromium)",
                        None,
                        "",
                        notes=loaded,
                        status="skipped",
                    )
                )
            else:
                best, median = best_and_median(loaded, higher_is_better=False)
                rows.append(
                    row(
                        BENCHMARK,
                        f"glasswork {name}, {n:,} dead",
                        "first page (Chromium load)",
                        best,
                        "ms",
                        median=median,
                        runs=repeats,
                    )
                )
    emit(rows, args.json)


if __name__ == "__main__":
    main()
