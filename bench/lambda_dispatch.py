"""Lambda dispatch: the SQS → Lambda handler, Glasswork vs Powertools, on the same events.

Two measurements, each on a 10-record SQS event (each body a Glasswork envelope of the same
payload, validated with the same pydantic model by every contender). Handlers are built
once, as a Lambda module would; logging is at WARNING for all. Contenders run interleaved,
repetition by repetition, so machine noise hits them alike; the headline is the best
repetition, the median is shown beside it.

**lambda dispatch** (µs per message): a sync no-op job, so only the library's own overhead
is left.

* ``glasswork``: ``bootstrap_worker(module=...)`` with ``define_job(schema=Payload)``.
* ``powertools``: ``BatchProcessor(EventType.SQS)`` + ``process_partial_response``; the
  record handler does ``Envelope.model_validate_json(record.body)``.
* ``powertools-model``: the same with ``BatchProcessor(model=...)`` (Powertools' parser).
* ``floor``: a bare loop doing only that ``model_validate_json`` per record and building the
  response: what any library must at least spend.

**lambda async I/O batch** (ms per 10-record event): an ``async def`` job that awaits 50 ms
of simulated I/O (``asyncio.sleep``), the most common kind of job. 50 ms is the least any
contender can take (every record concurrently); one at a time takes 500 ms.

* ``glasswork-async``: ``bootstrap_worker`` with ``define_job(handler=async_job)``.
* ``powertools-async``: ``AsyncBatchProcessor`` + ``async_process_partial_response``; the
  async record handler validates the body, then awaits the same 50 ms.

Run: ``python bench/lambda_dispatch.py [--quick] [--profile]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import Row, best_and_median, emit, parser, row, skipped, time_calls
from workload import IO_SECONDS, Envelope, Payload, noop, simulated_io, sqs_bench_event

BENCH = "lambda dispatch"
ASYNC_BENCH = "lambda async I/O batch"
RECORDS = 10

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def glasswork_handler() -> LambdaHandler:
    from glasswork import define_module
    from glasswork.jobs import bootstrap_worker, define_job

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    return bootstrap_worker(module=define_module("bench", jobs=[job]))


def glasswork_async_handler() -> LambdaHandler:
    from glasswork import define_module
    from glasswork.jobs import bootstrap_worker, define_job

    job = define_job(name="bench-io", handler=simulated_io, schema=Payload)
    return bootstrap_worker(module=define_module("bench", jobs=[job]))


def floor_handler() -> LambdaHandler:
    validate = Envelope.model_validate_json

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures: list[dict[str, str]] = []
        for record in event["Records"]:
            try:
                validate(record["body"])
            except ValueError:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    return handler


def build(name: str) -> LambdaHandler:
    if name == "glasswork":
        return glasswork_handler()
    if name == "glasswork-async":
        return glasswork_async_handler()
    if name == "floor":
        return floor_handler()
    from peers import powertools_batch

    return {
        "powertools": powertools_batch.make_handler,
        "powertools-model": powertools_batch.make_model_handler,
        "powertools-async": powertools_batch.make_async_handler,
    }[name]()


@dataclass(frozen=True)
class Kind:
    """One measurement: its benchmark name, the job its events name, how many events a
    timed run makes per repetition, and how a per-event time in seconds becomes the row."""

    bench: str
    job: str
    metric: str
    unit: str
    per_event: Callable[[float], float]
    events: Callable[[int], int]


SYNC = Kind(BENCH, "bench-noop", "µs per message", "µs", lambda s: s / RECORDS * 1e6, int)
ASYNC = Kind(
    ASYNC_BENCH,
    "bench-io",
    "ms per 10-record batch",
    "ms",
    lambda s: s * 1e3,
    lambda events: max(3, events // 400),  # 2,000 → 5 batches of 50+ ms per repetition
)

LABELS = {
    "glasswork": "Glasswork bootstrap_worker",
    "powertools": "Powertools BatchProcessor",
    "powertools-model": "Powertools BatchProcessor(model=)",
    "floor": "floor (bare pydantic loop)",
    "glasswork-async": "Glasswork bootstrap_worker",
    "powertools-async": "Powertools AsyncBatchProcessor",
}
KINDS = {
    "glasswork": SYNC,
    "powertools": SYNC,
    "powertools-model": SYNC,
    "floor": SYNC,
    "glasswork-async": ASYNC,
    "powertools-async": ASYNC,
}
OURS = ("glasswork", "glasswork-async")


def measure(
    contenders: Sequence[str], events_per_run: int, repeats: int
) -> tuple[list[Row], dict[str, list[float]]]:
    handlers: dict[str, tuple[LambdaHandler, dict[str, Any]]] = {}
    rows: list[Row] = []
    for name in contenders:
        kind = KINDS[name]
        try:
            handler = build(name)
        except ImportError as exc:
            why = f"not installed ({exc.name}): pip install aws-lambda-powertools"
            rows.append(skipped(kind.bench, LABELS[name], why))
            continue
        event = sqs_bench_event(RECORDS, job=kind.job)
        response = handler(event, None)
        failures = response.get("batchItemFailures")
        if failures:
            raise RuntimeError(f"{name}: the benchmark event failed: {response}")
        handlers[name] = (handler, event)
        warm = max(kind.events(events_per_run) // 5, 2 if kind is ASYNC else 50)
        time_calls(lambda h=handler, e=event: h(e, None), warm)

    samples: dict[str, list[float]] = {name: [] for name in handlers}
    for _ in range(repeats):
        for name, (handler, event) in handlers.items():
            kind = KINDS[name]
            number = kind.events(events_per_run)
            per_event = time_calls(lambda h=handler, e=event: h(e, None), number)
            samples[name].append(kind.per_event(per_event))
    for name, values in samples.items():
        kind = KINDS[name]
        best, median = best_and_median(values, higher_is_better=False)
        notes = f"10-record event, {kind.events(events_per_run)} events per run"
        if kind is ASYNC:
            notes += f"; each record awaits {IO_SECONDS * 1e3:.0f} ms"
        rows.append(
            row(
                kind.bench,
                LABELS[name],
                kind.metric,
                best,
                kind.unit,
                median=median,
                runs=repeats,
                notes=notes,
            )
        )
    return rows, samples


def profile(events: int) -> None:
    """Print the Glasswork handler's cProfile, by own time, for ``events`` events."""
    import cProfile
    import pstats

    handler = glasswork_handler()
    event = sqs_bench_event(RECORDS)
    handler(event, None)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(events):
        handler(event, None)
    prof.disable()
    stats = pstats.Stats(prof)
    calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"function calls per message: {calls / (events * RECORDS):.0f}")
    stats.sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str], contenders: Sequence[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--profile", action="store_true", help="print a cProfile of Glasswork")
    p.add_argument(
        "--contenders",
        default=",".join(LABELS),
        help=f"comma-separated, from {', '.join(LABELS)}",
    )
    p.add_argument("--label-suffix", default="", help="appended to Glasswork's labels")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        profile(500 if args.quick else 3000)
        return 0
    chosen = contenders or args.contenders.split(",")
    events, repeats = (300, 5) if args.quick else (2000, 9)
    rows, _ = measure(chosen, events, repeats)
    ours = {(KINDS[name].bench, LABELS[name]) for name in OURS}
    for r in rows:
        if (r["benchmark"], r["library"]) in ours:
            r["library"] += args.label_suffix
    emit(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
