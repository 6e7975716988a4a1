"""MemoryIdempotencyStore: keys in a dict, for tests and single-process use."""

from __future__ import annotations

import threading
import time

from .store import COMPLETED, IN_PROGRESS, IdempotencyRecord, IdempotencyStore


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in this process's memory (thread-safe). ``MockQueueDriver`` uses one; a real
    deployment needs a store every worker shares (SQLite, DynamoDB)."""

    blocking = False

    def __init__(self) -> None:
        self._records: dict[str, IdempotencyRecord] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def claim(self, key: str, token: str, until: float) -> IdempotencyRecord | None:
        now = time.time()
        with self._lock:
            if now >= self._next_purge:
                self._purge(now)
            held = self._records.get(key)
            if held is not None and held.expires_at > now:
                return held
            self._records[key] = IdempotencyRecord(key, IN_PROGRESS, until, token)
            return None

    def complete(self, key: str, token: str, expires_at: float) -> bool:
        with self._lock:
            held = self._records.get(key)
            if held is None or held.token != token:
                return False
            self._records[key] = IdempotencyRecord(key, COMPLETED, expires_at, token)
            return True

    def release(self, key: str, token: str) -> bool:
        with self._lock:
            held = self._records.get(key)
            if held is None or held.token != token:
                return False
            del self._records[key]
            return True

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._records.get(key)

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._records.clear()

    def records(self) -> list[IdempotencyRecord]:
        """Every record held (lapsed ones included, until purged)."""
        with self._lock:
            return list(self._records.values())

    def _purge(self, now: float) -> None:
        # At most once a minute, so a long-lived process does not keep every key forever.
        self._next_purge = now + 60.0
        for key in [k for k, r in self._records.items() if r.expires_at <= now]:
            del self._records[key]
