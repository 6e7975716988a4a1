"""How the long-running commands log: ``--log-level`` and ``--log-format text|json``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: With several worker processes (``worker --processes``), whose lines interleave.
TEXT_FORMAT_PID = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
LOG_FORMATS = ("text", "json")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: What every LogRecord has; anything else on a record came as ``extra`` (job_name, ...).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, the record's ``extra`` fields (the worker's ``job_name``, ``job_id``,
    ``attempt``, ``queue``, ``outcome``, ``duration_ms``) and, when there is one,
    ``exception`` (the formatted traceback); with ``pid``, also ``pid`` (the process id)."""

    def __init__(self, pid: bool = False) -> None:
        super().__init__()
        self.pid = pid

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.pid:
            entry["pid"] = record.process
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_level(text: str) -> str:
    """argparse type: a logging level name (any case), upper-cased."""
    name = text.strip().upper()
    if name not in _LEVELS:
        raise argparse.ArgumentTypeError(f"unknown log level {text!r}; use {', '.join(_LEVELS)}")
    return name


def configure_logging(level: str, log_format: str = "text", *, pid: bool = False) -> None:
    """Log to stderr at ``level``, as text lines or JSON objects; with ``pid``, each line
    says which process wrote it."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(pid))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT_PID if pid else TEXT_FORMAT))
    logging.basicConfig(level=logging.getLevelName(level), handlers=[handler])
