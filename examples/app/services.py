"""Services the jobs use. In a real app these talk to a database and an email provider."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from glasswork.jobs import TransientJobError

log = logging.getLogger("app")


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str


class UserService:
    """Looks users up; an in-memory table stands in for the database."""

    def __init__(self) -> None:
        self._users = {
            "1": User("1", "ada@example.com", "Ada"),
            "2": User("2", "grace@example.com", "Grace"),
            "3": User("3", "alan@example.com", "Alan"),
        }
        self.sessions = {"s1": time.time() - 90_000, "s2": time.time()}

    def find_by_id(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    def remove_stale_sessions(self, older_than: float = 86_400) -> int:
        cutoff = time.time() - older_than
        stale = [key for key, seen in self.sessions.items() if seen < cutoff]
        for key in stale:
            del self.sessions[key]
        return len(stale)


class EmailService:
    """Sends email; records what it sent. Grace's mail server is down on the first try, to
    show a retry."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._flaky = {"grace@example.com"}

    def send(self, template: str, *, to: str) -> None:
        if to in self._flaky:
            self._flaky.discard(to)
            raise TransientJobError(f"mail server for {to} busy", retry_after=0.5)
        self.sent.append((template, to))
        log.info("sent %r email to %s", template, to)
