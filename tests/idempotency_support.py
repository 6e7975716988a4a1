"""The contract every idempotency store keeps, as checks any store's tests can run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from glasswork import define_module
from glasswork.jobs import Idempotency, JobMessage, bootstrap_worker, define_job
from glasswork.jobs.execution import Done
from glasswork.jobs.idempotency import IdempotencyStore


def check_claim_complete_release(store: IdempotencyStore) -> None:
    now = time.time()
    assert store.claim("job#1", "a", now + 60) is None
    held = store.claim("job#1", "b", now + 60)
    assert held is not None and (held.status, held.token) == ("in_progress", "a")
    assert not store.complete("job#1", "b", now + 60)  # not b's to complete
    assert not store.release("job#1", "b")
    assert store.complete("job#1", "a", now + 3600)
    held = store.claim("job#1", "c", now + 60)
    assert held is not None and held.completed and held.expires_at >= now + 3599
    assert store.get("job#1") == held
    # A released claim frees the key at once.
    assert store.claim("job#2", "a", now + 60) is None
    assert store.release("job#2", "a")
    assert store.get("job#2") is None
    assert store.claim("job#2", "b", now + 60) is None
    assert store.get("missing") is None


def check_lapsed_records_count_as_absent(store: IdempotencyStore) -> None:
    now = time.time()
    assert store.claim("dead#1", "a", now + 0.2) is None  # its worker dies
    assert store.claim("dead#1", "b", now + 60) is not None
    time.sleep(0.25)
    assert store.claim("dead#1", "b", time.time() + 60) is None  # lapsed: b takes over
    assert not store.complete("dead#1", "a", now + 60)  # the dead run cannot settle it
    assert store.complete("dead#1", "b", time.time() + 0.2)
    assert store.claim("dead#1", "c", time.time() + 60) is not None
    time.sleep(0.25)
    assert store.claim("dead#1", "c", time.time() + 60) is None  # the completion expired


def check_one_of_many_concurrent_claims_wins(make_store: Callable[[], IdempotencyStore]) -> None:
    stores = [make_store() for _ in range(8)]  # one per worker, as separate processes have
    start = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def claim(index: int) -> None:
        start.wait()
        results[index] = stores[index].claim("race#1", f"t{index}", time.time() + 60)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    held = stores[0].get("race#1")
    assert held is not None and held.token == f"t{winners[0]}"


def check_jobs_whose_names_and_keys_run_together_never_share_a_key(
    store: IdempotencyStore,
) -> None:
    """Job ``refund`` keyed ``partial#o-17`` and job ``refund#partial`` keyed ``o-17`` (both
    ``refund#partial#o-17`` once joined with ``#``) are two runs, each of its own."""
    ran: list[tuple[str, str]] = []

    def job(name: str) -> object:
        return define_job(
            name=name,
            handler=lambda p: ran.append((name, p["order"])),
            idempotent=Idempotency(store=store, key=lambda p: p["order"]),
        )

    handler = bootstrap_worker(
        module=define_module("app", jobs=[job("refund"), job("refund#partial")])
    )
    for name, order in (("refund", "partial#o-17"), ("refund#partial", "o-17")):
        outcome = handler.executor.execute_sync(JobMessage.create(name, {"order": order}), 1)
        assert type(outcome) is Done, outcome
    assert ran == [("refund", "partial#o-17"), ("refund#partial", "o-17")]
