"""Text as PostgreSQL can store it: a ``text`` value cannot hold U+0000 (NUL)."""

from __future__ import annotations

from typing import overload


@overload
def storable(text: str) -> str: ...
@overload
def storable(text: None) -> None: ...
def storable(text: str | None) -> str | None:
    """``text`` with each NUL written as the four characters ``\\x00`` (as Python shows it):
    a value PostgreSQL takes, in which a reader still sees where the NUL was. A dead letter's
    reason often quotes user input, and a job name or id read from a body may hold one."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\\x00")


def unstorable(*texts: str | None) -> bool:
    """Whether one of ``texts`` holds a NUL: no stored id or name can equal it, so a look-up
    by it finds nothing (asking PostgreSQL would be a ``DataError``)."""
    return any(text is not None and "\x00" in text for text in texts)
