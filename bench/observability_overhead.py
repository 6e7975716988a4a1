"""Observability and idempotency overhead: what tracing, metrics and idempotency add per
message, against the same worker with them off, in the same run.

* **Lambda dispatch, µs per message**: ``handler(event, None)`` of a 10-record SQS event,
  divided by 10 (as ``lambda_dispatch.py``), every record a fresh job id, so idempotency
  claims and completes a key for each instead of skipping duplicates:

  - ``off``: ``bootstrap_worker(module=...)`` with tracing off (``GLASSWORK_TRACING=off``,
    or opentelemetry-api not installed): no step at all;
  - ``tracing, API only``: opentelemetry-api installed, no SDK configured (spans are no-ops);
  - ``tracing, SDK``: the OpenTelemetry SDK's ``TracerProvider`` with a
    ``BatchSpanProcessor`` and an exporter that drops what it gets (the export itself is
    the exporter's cost, not ours);
  - ``EMF metrics``: ``metrics=EMFMetrics(...)``, its line written to nowhere;
  - ``idempotency, memory`` / ``idempotency, SQLite``: ``idempotent=True`` with the
    in-memory store / a SQLite file store; ``idempotency, duplicate``: the same events
    delivered again, every record acknowledged without running;
  - ``all on``: SDK tracing, EMF metrics and idempotency (memory) together.

* **Enqueue, µs per job**: ``JobService.enqueue`` on a driver that keeps nothing, with
  tracing off, API only, and the SDK (the PRODUCER span and the context in the message).

Contenders run interleaved, repetition by repetition; the headline is the best repetition,
the median beside it; each row's note gives its ratio to ``off`` from the same run.

Run: ``python bench/observability_overhead.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import Row, best_and_median, emit, parser, row, skipped
from workload import PAYLOAD, Payload, noop

LAMBDA = "observability: lambda"
ENQUEUE = "observability: enqueue"
RECORDS = 10

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def sdk_provider() -> Any:
    """An SDK tracer provider exporting to nowhere, through the usual batch processor."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    # A queue deep enough that no span is dropped while the export thread catches up.
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=200_000))
    return provider


def lambda_handlers(tmp: Path) -> dict[str, tuple[Handler, bool]]:
    """Contender label → (handler, whether it is fed the same events again)."""
    from glasswork import define_module
    from glasswork.jobs import EMFMetrics, Idempotency, bootstrap_worker, define_job, set_tracing
    from glasswork.jobs.idempotency import MemoryIdempotencyStore, SQLiteIdempotencyStore
    from glasswork.jobs.telemetry import Tracing

    set_tracing(False)  # tracing only where a contender adds its step itself

    def handler(*, idempotent: Any = False, **options: Any) -> Handler:
        job = define_job(name="bench-noop", handler=noop, schema=Payload, idempotent=idempotent)
        return bootstrap_worker(module=define_module("bench", jobs=[job]), **options)

    def memory() -> Idempotency:
        return Idempotency(store=MemoryIdempotencyStore())

    drop = EMFMetrics(namespace="Bench", write=lambda line: None)
    provider = sdk_provider()
    handlers: dict[str, tuple[Handler, bool]] = {
        "off": (handler(), False),
        "tracing, API only": (handler(steps=[Tracing()]), False),
        "tracing, SDK": (handler(steps=[Tracing(provider)]), False),
        "EMF metrics": (handler(metrics=drop), False),
        "idempotency, memory": (handler(idempotent=memory()), False),
        "idempotency, SQLite": (
            handler(idempotent=Idempotency(store=SQLiteIdempotencyStore(tmp / "keys.db"))),
            False,
        ),
        "idempotency, duplicate": (handler(idempotent=memory()), True),
        "all on": (
            handler(idempotent=memory(), metrics=drop, steps=[Tracing(provider)]),
            False,
        ),
    }
    return handlers


def events(count: int, start: int) -> list[dict[str, Any]]:
    """``count`` 10-record SQS events, each record a fresh job id from ``start`` on."""
    from glasswork.jobs import JobMessage
    from glasswork.jobs.testing import sqs_event

    template = JobMessage.create("bench-noop", PAYLOAD, queue="bench", job_id="0" * 32).encode()
    made = []
    for e in range(count):
        bodies = [
            template.replace("0" * 32, f"{start + e * RECORDS + r:032x}", 1) for r in range(RECORDS)
        ]
        made.append(sqs_event(bodies, queue="bench"))
    return made


def time_events(handler: Handler, batch: list[dict[str, Any]]) -> float:
    """µs per message over ``batch``."""
    gc.collect()
    started = time.perf_counter()
    for event in batch:
        handler(event, None)
    return (time.perf_counter() - started) / (len(batch) * RECORDS) * 1e6


def measure_lambda(events_per_run: int, repeats: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-obs-") as tmp:
        handlers = lambda_handlers(Path(tmp))
        replay = events(events_per_run, 10**9)  # what the duplicate contender sees again
        for handler, again in handlers.values():  # warm up, and complete the replayed keys
            failures = handler(replay[0] if again else events(1, 0)[0], None)["batchItemFailures"]
            if failures:
                raise RuntimeError(f"the benchmark event failed: {failures}")
        if "idempotency, duplicate" in handlers:
            for event in replay:
                handlers["idempotency, duplicate"][0](event, None)
        samples: dict[str, list[float]] = {name: [] for name in handlers}
        next_id = 1
        for _ in range(repeats):
            for name, (handler, again) in handlers.items():
                batch = replay if again else events(events_per_run, next_id)
                next_id += events_per_run * RECORDS
                samples[name].append(time_events(handler, batch))
    return rows(LAMBDA, "µs per message", samples, f"10-record event, {events_per_run} events")


class Discard:
    """A driver that keeps nothing: only the service's (and tracing's) cost is measured."""

    def __new__(cls) -> Any:
        from glasswork.jobs import EnqueueResult, QueueDriver

        class _Discard(QueueDriver):
            name = "discard"

            def enqueue(self, message: Any) -> EnqueueResult:
                message.encode()
                return EnqueueResult("m", message.job_id, message.queue)

            def enqueue_in(self, message: Any, delay_seconds: float) -> EnqueueResult:
                return self.enqueue(message)

        return _Discard()


def measure_enqueue(jobs_per_run: int, repeats: int) -> list[Row]:
    from glasswork.jobs import JobService, define_job, set_tracing

    job = define_job(name="bench-noop", handler=noop, schema=Payload)
    service = JobService(Discard())
    provider = sdk_provider()
    settings: dict[str, Callable[[], None]] = {
        "off": lambda: set_tracing(False),
        "tracing, API only": lambda: set_tracing(True),
        "tracing, SDK": lambda: set_tracing(True, tracer_provider=provider),
    }
    samples: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, setting in settings.items():
            setting()
            service.enqueue(job, PAYLOAD)  # warm
            gc.collect()
            started = time.perf_counter()
            for _ in range(jobs_per_run):
                service.enqueue(job, PAYLOAD)
            samples[name].append((time.perf_counter() - started) / jobs_per_run * 1e6)
    set_tracing(None)
    return rows(ENQUEUE, "µs per job", samples, f"JobService.enqueue, {jobs_per_run} jobs")


def rows(benchmark: str, metric: str, samples: dict[str, list[float]], notes: str) -> list[Row]:
    best = {name: best_and_median(v, higher_is_better=False) for name, v in samples.items()}
    base = best["off"][0]
    return [
        row(
            benchmark,
            f"Glasswork, {name}",
            metric,
            value,
            "µs",
            median=median,
            runs=len(samples[name]),
            notes=f"{notes}; {value / base:.2f}x off, +{value - base:.1f} µs (same run)",
        )
        for name, (value, median) in best.items()
    ]


def main(argv: Sequence[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        why = "not installed: pip install opentelemetry-sdk (the dev extra has it)"
        emit([skipped(LAMBDA, "Glasswork", why), skipped(ENQUEUE, "Glasswork", why)], args.json)
        return 0
    events_per_run, jobs_per_run, repeats = (100, 2000, 3) if args.quick else (500, 20000, 7)
    found = measure_lambda(events_per_run, repeats) + measure_enqueue(jobs_per_run, repeats)
    emit(found, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
