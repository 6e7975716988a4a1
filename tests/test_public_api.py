"""The public API's tiers: ``glasswork`` and ``glasswork.jobs`` export what an application
writes; the rest lives in named modules; every name the two packages exported before the
tiers still imports from its old place, warning where it moved (the errors without a
warning); our own README, docs, examples, benchmarks and tests use the new places."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import glasswork
import glasswork.jobs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# `__all__` of both packages before the tiers (issue 19): every name must still import.
OLD_JOBS_ALL = [
    "MAX_MESSAGE_BYTES",
    "AsyncEnqueuer",
    "AsyncJobService",
    "BatchRetryError",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterRecord",
    "DeadLetterUnavailableError",
    "Discard",
    "Done",
    "DrainResult",
    "Duplicate",
    "DuplicateJobError",
    "DynamoDBIdempotencyStore",
    "EMFMetrics",
    "EnqueueError",
    "EnqueueResult",
    "EnqueuedJob",
    "Executor",
    "FoundJob",
    "GlassworkError",
    "Idempotency",
    "IdempotencyStore",
    "InvalidJobPayloadError",
    "JobContext",
    "JobDefinition",
    "JobError",
    "JobHooks",
    "JobInProgressError",
    "JobLogger",
    "JobMessage",
    "JobMetrics",
    "JobRegistry",
    "JobRun",
    "JobService",
    "JobTimeout",
    "JobTimeoutError",
    "LambdaWorker",
    "MalformedMessageError",
    "MemoryIdempotencyStore",
    "MetricsSink",
    "MockQueueDriver",
    "Outcome",
    "OutcomeCount",
    "OutcomeLog",
    "PayloadTooLargeError",
    "PermanentJobError",
    "PostgresQueueDriver",
    "PrometheusMetrics",
    "QueueDriver",
    "QueueStats",
    "ReceivedMessage",
    "Retry",
    "RetryPolicy",
    "RunStep",
    "SQLiteIdempotencyStore",
    "SQLiteQueueDriver",
    "SQSQueueDriver",
    "Tracing",
    "TransientJobError",
    "UnknownJobError",
    "Worker",
    "bootstrap_worker",
    "create_idempotency_table",
    "create_scheduler_handler",
    "define_job",
    "define_periodic_job",
    "driver_from_url",
    "parse_duration",
    "run_scheduler",
    "set_tracing",
]
OLD_GLASSWORK_ALL = [*OLD_JOBS_ALL, "Module", "Provider", "Services", "define_module", "provide"]

# The errors a worker raises rather than an application: documented as importable from both
# packages (an `except` clause never has to change), so no warning.
QUIET = {
    "JobError",
    "UnknownJobError",
    "MalformedMessageError",
    "JobInProgressError",
    "BatchRetryError",
    "DeadLetterUnavailableError",
    # Added since the tiers (issue 20), for an application's `except` clauses.
    "JobFailedError",
    "JobNotFoundError",
    "StatusUnavailableError",
    "PriorityUnsupportedError",
    "JobCancelledError",
}


def public_api_section() -> str:
    text = README.read_text()
    start = text.index("\n## Public API\n")
    return text[start : text.index("\n## ", start + 1)]


def documented_places() -> dict[str, str]:
    """Name -> module, from the README's table of named modules."""
    places = {}
    for module, names in re.findall(
        r"^\| `([\w.]+)` \| [^|]+ \| (.+) \|$", public_api_section(), re.M
    ):
        for name in re.findall(r"`(\w+)`", names):
            places[name] = module
    return places


def test_both_packages_export_at_most_35_names() -> None:
    assert len(glasswork.jobs.__all__) <= 35
    assert len(glasswork.__all__) <= 35
    assert len(set(glasswork.__all__)) == len(glasswork.__all__)
    assert set(glasswork.__all__) - set(glasswork.jobs.__all__) == {
        "Module",
        "define_module",
        "provide",
    }
    internals = {"Executor", "JobRegistry", "JobRun", "RunStep", "ReceivedMessage", "QueueStats"}
    assert not internals & set(glasswork.__all__)


def test_the_seeds_names_are_in_the_application_tier() -> None:
    """The TypeScript seeds' imports from 'glasswork' and 'glasswork/jobs', in snake_case."""
    seeds = {
        "define_job",
        "define_periodic_job",
        "define_module",
        "JobService",
        "SQSQueueDriver",
        "MockQueueDriver",
        "QueueDriver",
        "JobMessage",
        "EnqueueResult",
        "bootstrap_worker",
        "create_scheduler_handler",
        "TransientJobError",
        "PermanentJobError",
        "InvalidJobPayloadError",
        "PayloadTooLargeError",
        "DuplicateJobError",
    }
    assert seeds <= set(glasswork.__all__)
    assert seeds - {"define_module"} <= set(glasswork.jobs.__all__)


@pytest.mark.parametrize("package", [glasswork, glasswork.jobs], ids=lambda p: p.__name__)
def test_dir_shows_the_application_tier(package: object) -> None:
    shown = {name for name in dir(package) if not name.startswith("__")}
    assert shown == set(package.__all__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("package", [glasswork, glasswork.jobs], ids=lambda p: p.__name__)
def test_exported_names_import_without_a_warning(package: object) -> None:
    name = package.__name__  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(f"from {name} import *", {})
        for exported in package.__all__:  # type: ignore[attr-defined]
            assert getattr(package, exported) is not None


OLD_NAMES = [("glasswork.jobs", n) for n in OLD_JOBS_ALL] + [
    ("glasswork", n) for n in OLD_GLASSWORK_ALL
]


@pytest.mark.parametrize(("package", "name"), OLD_NAMES, ids=[f"{p}.{n}" for p, n in OLD_NAMES])
def test_every_name_exported_before_the_tiers_still_imports(package: str, name: str) -> None:
    module = importlib.import_module(package)
    if name in module.__all__:
        return  # checked above
    place = documented_places()[name]
    expected = getattr(importlib.import_module(place), name)
    if name in QUIET:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            namespace: dict[str, object] = {}
            exec(f"from {package} import {name}", namespace)
        assert namespace[name] is expected
        assert place == "glasswork.jobs.errors"
        return
    message = re.escape(f"{package}.{name} is now {place}.{name}; import it from {place}")
    namespace = {}
    with pytest.warns(DeprecationWarning, match=message) as seen:
        exec(f"from {package} import {name}", namespace)
    assert namespace[name] is expected
    assert len([w for w in seen if re.match(message, str(w.message))]) == 1  # once, not twice
    # Every use warns (the name is never kept on the package), pointing at the user's line.
    with pytest.warns(DeprecationWarning, match=message) as seen:
        assert getattr(module, name) is expected
    assert {w.filename for w in seen} == {__file__}


def test_every_error_imports_from_both_packages_without_a_warning() -> None:
    errors = importlib.import_module("glasswork.jobs.errors")
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, glasswork.GlassworkError)
    }
    assert defined == QUIET | {n for n in glasswork.jobs.__all__ if n.endswith("Error")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in defined:
            assert getattr(glasswork.jobs, name) is getattr(glasswork, name) is vars(errors)[name]


def test_unknown_names_still_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        glasswork.jobs.Nope  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        exec("from glasswork import Nope", {})


def test_every_moved_name_is_documented_where_its_warning_sends_you() -> None:
    places = documented_places()
    moved = {**glasswork.jobs.MOVED_NAMES, **glasswork.MOVED_NAMES}
    assert set(moved) == (set(OLD_GLASSWORK_ALL) - set(glasswork.__all__))
    for name, place in moved.items():
        assert places.get(name) == place, name
    for name, place in places.items():
        assert getattr(importlib.import_module(place), name) is not None, (place, name)


def test_every_exported_name_is_documented() -> None:
    section = public_api_section()
    tier_table = section[: section.index("The rest lives in named modules")]
    in_readme = set(re.findall(r"`(\w+)`", tier_table))
    docstring = set(re.findall(r"\w+", glasswork.jobs.__doc__ or ""))
    for name in glasswork.__all__:
        assert name in in_readme, name
        assert inspect.getdoc(getattr(glasswork, name)), name
    for name in glasswork.jobs.__all__:
        assert name in docstring, name
    assert {"define_module", "Module", "provide"} <= set(
        re.findall(r"\w+", glasswork.__doc__ or "")
    )


@pytest.mark.subprocess
def test_lazy_names_stay_lazy() -> None:
    """The tiers add no eager import: the optional-package parts load on first use."""
    code = (
        "import sys, glasswork, glasswork.jobs; print(sorted(m for m in sys.modules "
        "if m.startswith(('glasswork.jobs.drivers.sqs', 'glasswork.jobs.drivers.sqlite', "
        "'glasswork.jobs.drivers.postgres', 'glasswork.jobs.worker', "
        "'glasswork.jobs.idempotency.dynamodb', 'glasswork.jobs.idempotency.sqlite', "
        "'glasswork.jobs.metrics.prometheus', 'glasswork.jobs.metrics.outcome_log', 'boto3', "
        "'pytest', 'glasswork.jobs.testing.contract'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- our own code uses the new places ----------------------------------------------------


def _glasswork_imports(source: str) -> list[str]:
    """The import statements of ``source`` that import from glasswork, as one-line code."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] == "glasswork":
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "glasswork"]
    return found


def our_import_statements() -> dict[str, list[str]]:
    """Every glasswork import written in the README, docs/*.md, examples/, bench/ and tests/."""
    statements: dict[str, list[str]] = {}
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for n, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            statements[f"{doc.name} block {n + 1}"] = _glasswork_imports(block)
    for folder in ("examples", "bench", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != Path(__file__):  # this file imports old names on purpose
                statements[str(path.relative_to(ROOT))] = _glasswork_imports(path.read_text())
    return {where: found for where, found in statements.items() if found}


@pytest.mark.subprocess
def test_our_docs_examples_benchmarks_and_tests_import_without_deprecation() -> None:
    statements = our_import_statements()
    assert "README.md block 1" in statements and "examples/app/demo.py" in statements
    assert any(where.startswith("sqs.md") for where in statements)
    script = (
        "import json, sys, warnings\n"
        "warnings.filterwarnings('error', message=r'glasswork\\.', category=DeprecationWarning)\n"
        "failed = []\n"
        "for where, statement in json.load(sys.stdin):\n"
        "    try:\n"
        "        exec(statement, {})\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{where}: {statement}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    pairs = sorted({(w, s) for w, found in statements.items() for s in found})
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT / "tests",  # the tests' own helper modules import from here
        timeout=120,
    )
    assert done.stdout.strip() == ""
