"""Lambda cold start: a whole Python process loading a Lambda module, Glasswork vs Powertools.

Each contender is a Lambda-like module written to a temporary directory and run as its own
process (``python module.py``), the contenders interleaved run by run so machine noise hits
them alike; each gets one untimed run first (so both read compiled ``.pyc`` files, as a
deployed function does; ``PYTHONDONTWRITEBYTECODE`` is dropped from their environment, else
Glasswork's sources, installed editable, would be compiled again in every process while the
peers' installed packages have their ``.pyc``). Three numbers per run:

* **process**: the wall time of the whole process, interpreter start to exit;
* **init**: inside the process, from the module's first line to its handler built (imports,
  the pydantic model, the handler): what Lambda's init phase adds to the interpreter;
* **cpu**: the CPU time (user and system) of the whole process, which time spent waiting for
  a busy machine's cores does not inflate as it does the wall times.

Contenders, each with the same one pydantic model (:class:`Payload` of bench/workload.py):

* ``glasswork``: imports ``glasswork.jobs``, defines a job with the model, calls
  ``bootstrap_worker``;
* ``powertools``: imports ``aws_lambda_powertools.utilities.batch``, builds a
  ``BatchProcessor(EventType.SQS)`` whose record handler validates the model;
* ``powertools-model``: the same with ``BatchProcessor(model=...)`` (Powertools' parser);
* ``floor``: Python and pydantic with the model alone: what every contender pays.

With ``--instructions``, each contender instead runs once under valgrind's callgrind and the
instructions it executed (``I refs``) are compared: a count that a loaded machine does not
change, for comparing two versions of the code where wall time is too noisy.

Run: ``python bench/cold_start.py [--quick] [--runs N] [--instructions]``.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import Row, emit, parser, row, skipped

BENCH = "lambda cold start"

MODEL = """
from pydantic import BaseModel, Field


class Payload(BaseModel):
    user_id: str
    email: str
    plan: str = "free"
    seats: int = 1
    tags: list[str] = Field(default_factory=list)
"""

MODULES = {
    "glasswork": """
from glasswork import define_module
from glasswork.jobs import bootstrap_worker, define_job


def send_welcome(payload: Payload) -> None:
    return None


welcome = define_job(name="send-welcome", handler=send_welcome, schema=Payload)
handler = bootstrap_worker(module=define_module("cold", jobs=[welcome]))
""",
    "powertools": """
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record):
    Payload.model_validate_json(record.body)


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
""",
    "powertools-model": """
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import Json


class PayloadRecord(SqsRecordModel):
    body: Json[Payload]


processor = BatchProcessor(event_type=EventType.SQS, model=PayloadRecord)


def record_handler(record: PayloadRecord) -> None:
    return None


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
""",
    "floor": """
handler = Payload
""",
}

LABELS = {
    "glasswork": "Glasswork bootstrap_worker",
    "powertools": "Powertools BatchProcessor",
    "powertools-model": "Powertools BatchProcessor(model=)",
    "floor": "floor (Python + pydantic model)",
}
#: What the ratio column divides by.
PEER = "powertools"


def source(name: str) -> str:
    """The module: a clock started on its first line, the model, the contender, and the
    init time printed (ms) once the handler exists."""
    return (
        "import time\n_started = time.perf_counter()\n"
        + MODEL
        + MODULES[name]
        + "\nprint((time.perf_counter() - _started) * 1e3)\n"
    )


#: The contenders' environment: writing ``.pyc`` files allowed (see the module docstring).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(path: Path) -> tuple[float, float, float]:
    """(process ms, init ms, cpu ms) of one process running ``path``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=path.parent, env=ENV
    )
    wall = (time.perf_counter() - started) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3
    return wall, float(done.stdout.strip().splitlines()[-1]), cpu


def instructions_once(path: Path) -> int:
    """Instructions (callgrind's ``I refs``) one process running ``path`` executes."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=path.parent,
        env=ENV,
    )
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{path.name} failed under valgrind:\n{done.stderr}")
    return int(found.group(1))


def measure_instructions(contenders: Sequence[str]) -> list[Row]:
    """Each contender once under callgrind: instructions per process, and the ratio to the peer."""
    if shutil.which("valgrind") is None:
        print("--instructions: valgrind is not installed here; skipped")
        return []
    rows: list[Row] = []
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in contenders:
            why = available(name)
            if why is not None:
                rows.append(skipped(BENCH, LABELS[name], why))
                continue
            path = Path(tmp, f"{name.replace('-', '_')}_function.py")
            path.write_text(source(name))
            run_once(path)  # compiles the .pyc files: a deployed function has them
            counts[name] = instructions_once(path)
    peer = counts.get(PEER)
    print(f"\n{'':<36}{'instructions (M)':>18}{'÷ peer':>10}")
    for name, count in counts.items():
        ratio = f"{count / peer:.3f}x" if peer else ""
        print(f"{LABELS[name]:<36}{count / 1e6:>18.1f}{ratio:>10}")
        rows.append(
            row(BENCH, LABELS[name], "instructions per process", count, "Ir", notes="callgrind")
        )
    print(f"(one process each under callgrind; peer: {LABELS[PEER]})\n")
    return rows


def available(name: str) -> str | None:
    """Why ``name`` cannot run here (None: it can)."""
    module = "aws_lambda_powertools" if name.startswith("powertools") else "glasswork"
    try:
        __import__(module)
    except ImportError:
        return f"not installed ({module})"
    return None


def measure(contenders: Sequence[str], runs: int) -> list[Row]:
    rows: list[Row] = []
    samples: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, Path] = {}
        for name in contenders:
            why = available(name)
            if why is not None:
                rows.append(skipped(BENCH, LABELS[name], why))
                continue
            paths[name] = Path(tmp, f"{name.replace('-', '_')}_function.py")
            paths[name].write_text(source(name))
            run_once(paths[name])  # compiles the .pyc files: a deployed function has them
            samples[name] = []
        for _ in range(runs):
            for name, path in paths.items():
                samples[name].append(run_once(path))
    medians = {
        name: tuple(statistics.median(column) for column in zip(*s, strict=True))
        for name, s in samples.items()
    }
    peer = medians.get(PEER)
    head = ("process ms", "init ms", "cpu ms", "process ÷ peer", "init ÷ peer", "cpu ÷ peer")
    print(f"\n{'':<36}" + "".join(f"{h:>{len(h) + 2}}" for h in head))
    for name, (wall, init, cpu) in medians.items():
        numbers = [f"{wall:.1f}", f"{init:.1f}", f"{cpu:.1f}"]
        if peer is not None:
            numbers += [f"{wall / peer[0]:.2f}x", f"{init / peer[1]:.2f}x", f"{cpu / peer[2]:.2f}x"]
        print(
            f"{LABELS[name]:<36}"
            + "".join(f"{n:>{len(h) + 2}}" for n, h in zip(numbers, head, strict=False))
        )
        notes = f"median of {runs} processes; init (module only) {init:.1f} ms; cpu {cpu:.1f} ms"
        rows.append(
            row(
                BENCH,
                LABELS[name],
                "ms per process",
                wall,
                "ms",
                median=wall,
                runs=runs,
                notes=notes,
            )
        )
    print(f"(medians of {runs} runs each, interleaved; peer: {LABELS[PEER]})\n")
    return rows


def main(argv: Sequence[str]) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="processes per contender")
    p.add_argument("--contenders", default=",".join(LABELS), help=f"from {', '.join(LABELS)}")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind (callgrind) instead of timing",
    )
    args = p.parse_args(argv)
    if args.instructions:
        emit(measure_instructions(args.contenders.split(",")), args.json)
        return 0
    runs = args.runs or (7 if args.quick else 21)
    emit(measure(args.contenders.split(","), runs), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
