"""``glasswork dlq``: list, redrive or purge dead letters."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CommandError, add_command, capability, open_driver, positive_int


def register(commands: Any) -> None:
    dlq = add_command(commands, "dlq", "List, redrive or purge dead letters.")
    dlq.add_argument("action", choices=["list", "redrive", "purge"])
    dlq.add_argument("--id", dest="ids", action="append", help="a dead letter id")
    dlq.add_argument("--all", action="store_true", help="redrive or purge every dead letter")
    dlq.add_argument("--queue", help="only this queue's dead letters")
    dlq.add_argument("--limit", type=positive_int, default=100, help="list at most this many")
    dlq.add_argument("--json", action="store_true", help="print JSON (list)")
    dlq.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    driver = open_driver(args)
    if args.action == "list":
        records = capability(driver, "dead_letters", "list dead letters")(
            queue=args.queue, limit=args.limit
        )
        if args.json:
            print(json.dumps([_dead_dict(r) for r in records], indent=2))
        elif not records:
            print("no dead letters")
        else:
            for r in records:
                failed = r.failed_at.isoformat(timespec="seconds") if r.failed_at else "?"
                print(
                    f"#{r.id} {failed} queue={r.queue} job={r.job_name} id={r.job_id}\n"
                    f"    reason: {r.reason}\n    body: {r.body[:300]}"
                )
        return 0
    if not args.ids and not args.all:
        raise CommandError(f"dlq {args.action} needs --id N (repeatable) or --all")
    ids = None if args.all else args.ids
    if args.action == "redrive":
        moved = capability(driver, "redrive", "redrive dead letters")(ids, queue=args.queue)
        print(f"redrove {moved} dead letter(s)")
    else:
        if args.queue:
            raise CommandError("dlq purge takes --id or --all, not --queue")
        purged = capability(driver, "purge_dead_letters", "purge dead letters")(ids)
        print(f"purged {purged} dead letter(s)")
    return 0


def _dead_dict(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "queue": record.queue,
        "job_name": record.job_name,
        "job_id": record.job_id,
        "reason": record.reason,
        "failed_at": record.failed_at.isoformat() if record.failed_at else None,
        "body": record.body,
    }
