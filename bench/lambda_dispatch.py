"""Lambda dispatch: per-message overhead of the SQS → Lambda handler, Glasswork vs Powertools.

Every contender gets the same 10-record SQS event (each body a Glasswork envelope of the same
payload), validates the payload with the same pydantic model, runs a no-op, and returns the
partial batch response. Handlers are built once, as a Lambda module would; logging is at
WARNING for all. Contenders run interleaved, repetition by repetition, so machine noise hits
them alike; the headline is the best repetition, the median is shown beside it.

* ``glasswork``: ``bootstrap_worker(module=...)`` with ``define_job(schema=Payload)``.
* ``powertools``: ``BatchProcessor(EventType.SQS)`` + ``process_partial_response``; the
  record handler does ``Envelope.model_validate_json(record.body)``.
* ``powertools-model``: the same with ``BatchProcessor(model=...)`` (Powertools' parser).
* ``floor``: a bare loop doing only that ``model_validate_json`` per record and building the
  response: what any library must at least spend.

Run: ``python bench/lambda_dispatch.py [--quick] [--profile]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from _common import Row, best_and_median, emit, parser, row, skipped, time_calls
from workload import Envelope, Payload, noop, sqs_bench_event

BENCH = "lambda dispatch"
RECORDS = 10

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def glasswork_handler() -> LambdaHandler:
    from glasswork import define_module
    from glasswork.jobs import bootstrap_worker, define_job

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
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
    if name == "floor":
        return floor_handler()
    from peers.powertools_batch import make_handler, make_model_handler

    return make_handler() if name == "powertools" else make_model_handler()


LABELS = {
    "glasswork": "Glasswork bootstrap_worker",
    "powertools": "Powertools BatchProcessor",
    "powertools-model": "Powertools BatchProcessor(model=)",
    "floor": "floor (bare pydantic loop)",
}


def measure(
    contenders: Sequence[str], events_per_run: int, repeats: int
) -> tuple[list[Row], dict[str, list[float]]]:
    event = sqs_bench_event(RECORDS)
    handlers: dict[str, LambdaHandler] = {}
    rows: list[Row] = []
    for name in contenders:
        try:
            handler = build(name)
        except ImportError as exc:
            rows.append(
                skipped(
                    BENCH,
                    LABELS[name],
                    f"not installed ({exc.name}): pip install aws-lambda-powertools",
                )
            )
            continue
        response = handler(event, None)
        failures = response.get("batchItemFailures")
        if failures:
            raise RuntimeError(f"{name}: the benchmark event failed: {response}")
        handlers[name] = handler
        time_calls(lambda h=handler: h(event, None), max(events_per_run // 5, 50))  # warm up

    samples: dict[str, list[float]] = {name: [] for name in handlers}
    for _ in range(repeats):
        for name, handler in handlers.items():
            per_event = time_calls(lambda h=handler: h(event, None), events_per_run)
            samples[name].append(per_event / RECORDS * 1e6)
    for name, values in samples.items():
        best, median = best_and_median(values, higher_is_better=False)
        rows.append(
            row(
                BENCH,
                LABELS[name],
                "µs per message",
                best,
                "µs",
                median=median,
                runs=repeats,
                notes=f"10-record event, {events_per_run} events per run",
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
    p.add_argument("--label-suffix", default="", help="appended to Glasswork's label")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.profile:
        profile(500 if args.quick else 3000)
        return 0
    chosen = contenders or args.contenders.split(",")
    events, repeats = (300, 5) if args.quick else (2000, 9)
    rows, _ = measure(chosen, events, repeats)
    for r in rows:
        if r["library"] == LABELS["glasswork"]:
            r["library"] += args.label_suffix
    emit(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
