"""``glasswork dlq``: list, redrive or purge dead letters (drivers with dead-letter admin:
SQLite, PostgreSQL, SQS).

``list`` leaves dead letters in place (on SQS it peeks: receives with a short visibility
timeout and releases at once). Unknown ids and unknown queues are errors, and nothing is
changed then.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import PurePath
from typing import Any

from ..jobs.drivers.contract import DeadLetterAdmin, QueueDriver, capabilities_of
from ._common import (
    CommandError,
    add_command,
    age,
    check_queue,
    need,
    open_driver,
    positive_int,
    print_table,
)
from ._options import exclusive, option

SQS = (
    "--driver 'sqs://us-east-1?queue.default=https://sqs.us-east-1.amazonaws.com/123456789012/jobs'"
)
#: More than any dead-letter table a person would go through by id.
_ALL = 1_000_000
#: A frame's line in a formatted traceback.
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+)', re.M)


def register(commands: Any) -> None:
    dlq = add_command(
        commands,
        "dlq",
        "List, redrive or purge dead letters.",
        driver=False,
        examples=["glasswork dlq list", "glasswork dlq redrive --all", f"glasswork dlq list {SQS}"],
    )
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = add_command(
        actions,
        "list",
        "Show dead letters: id, queue, job, job id, age, where the error was raised and the "
        "reason (left in place; --json adds bodies and tracebacks).",
        examples=[
            "glasswork dlq list --queue emails --limit 20",
            "glasswork dlq list --json | jq '.[].reason'",
            f"glasswork dlq list {SQS}",
        ],
    )
    option(listing, "--queue", help="only this queue's dead letters")
    option(
        listing, "--limit", metavar="N", type=positive_int, default=100, help="at most this many"
    )
    option(
        listing, "--json", action="store_true", help="print JSON, bodies and tracebacks included"
    )
    listing.set_defaults(run=run_list)

    redrive = add_command(
        actions,
        "redrive",
        "Send dead letters back to their queues to run again (SQS: StartMessageMoveTask "
        "where the DLQ supports it, else in batches).",
        examples=[
            "glasswork dlq redrive --id 7 --id 9",
            "glasswork dlq redrive --all --queue emails",
            f"glasswork dlq redrive --all {SQS}",
        ],
    )
    _add_selection(redrive)
    redrive.set_defaults(run=run_redrive)

    purge = add_command(
        actions,
        "purge",
        "Delete dead letters for good, after asking (--yes does not ask).",
        examples=[
            "glasswork dlq purge --id 7",
            "glasswork dlq purge --all --queue emails --yes",
            f"glasswork dlq purge --all --yes {SQS}",
        ],
    )
    _add_selection(purge)
    option(purge, "-y", "--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(run=run_purge)


def _add_selection(sub: argparse.ArgumentParser) -> None:
    # Required, but argparse cannot see the environment: exclusive() checks it.
    which = sub.add_mutually_exclusive_group()
    ids = option(
        sub,
        "--id",
        dest="ids",
        metavar="ID",
        action="append",
        group=which,
        help="a dead letter id (repeatable; in the variable, separated by spaces)",
    )
    every = option(
        sub, "--all", action="store_true", group=which, help="every dead letter (of --queue)"
    )
    exclusive(sub, [ids, every], required=True)
    option(sub, "--queue", help="only this queue's dead letters")


def run_list(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    admin = need(capabilities_of(driver).dead_letter_admin, driver, "list dead letters")
    check_queue(driver, args.queue)
    records = admin.dead_letters(queue=args.queue, limit=args.limit)
    if args.json:
        print(json.dumps([_as_dict(r) for r in records], indent=2))
    elif not records:
        print("no dead letters")
    else:
        rows = [
            (
                r.id,
                r.queue or "-",
                r.job_name or "?",
                r.job_id or "?",
                age(r.failed_at),
                _raised_at(r.traceback),
                _short(r),
            )
            for r in records
        ]
        print_table(("ID", "QUEUE", "JOB", "JOB ID", "AGE", "RAISED AT", "REASON"), rows)
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    admin = need(capabilities_of(driver).dead_letter_admin, driver, "redrive dead letters")
    ids = _selected(driver, admin, args)
    moved = admin.redrive(ids, queue=args.queue)
    print(f"redrove {moved} dead letter(s)")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    caps = capabilities_of(driver)
    admin = need(caps.dead_letter_admin, driver, "purge dead letters")
    ids = _selected(driver, admin, args)
    if args.queue and ids is None and not caps.purge_by_queue:
        # This driver purges by id: a queue's dead letters are the ids it lists.
        ids = [r.id for r in admin.dead_letters(queue=args.queue, limit=_ALL)]
    what = f"dead letters {', '.join(ids)}" if ids is not None else "every dead letter"
    where = f" of queue {args.queue!r}" if args.queue else ""
    if not args.yes and not _confirm(f"Purge {what}{where} for good? [y/N] "):
        raise CommandError("nothing purged (answer y, or pass --yes)")
    if caps.purge_by_queue:
        purged = admin.purge_dead_letters(ids, queue=args.queue)
    else:  # a driver written before purge_dead_letters took queue=
        purged = admin.purge_dead_letters(ids)
    print(f"purged {purged} dead letter(s)")
    return 0


def _selected(
    driver: QueueDriver, admin: DeadLetterAdmin, args: argparse.Namespace
) -> list[str] | None:
    """The ids to act on (None: all), after checking the queue and that every id exists."""
    check_queue(driver, args.queue)
    if args.all:
        return None
    ids = [str(i) for i in args.ids]
    known = {r.id for r in admin.dead_letters(queue=args.queue, limit=_ALL)}
    missing = [i for i in ids if i not in known]
    if missing:
        where = f" of queue {args.queue!r}" if args.queue else ""
        raise CommandError(
            f"unknown dead letter id(s) {', '.join(missing)}{where}; "
            "`glasswork dlq list` shows the ids"
        )
    return ids


def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _short(record: Any, width: int = 80) -> str:
    reason = " ".join(str(record.reason).split())
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def _raised_at(traceback: str | None) -> str:
    """``file.py:42``, the innermost frame of a traceback ("-" without one)."""
    frames = list(_FRAME.finditer(traceback or ""))
    if not frames:
        return "-"
    last = frames[-1]
    return f"{PurePath(last['file']).name}:{last['line']}"


def _as_dict(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "queue": record.queue,
        "job_name": record.job_name,
        "job_id": record.job_id,
        "reason": record.reason,
        "failed_at": record.failed_at.isoformat() if record.failed_at else None,
        "age": age(record.failed_at),
        "body": record.body,
        "traceback": record.traceback,
    }
