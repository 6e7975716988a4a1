"""A small tmpfs to fill up for real (``mount_small_disk``), in a mount namespace private to
this test process: the mount is seen by this process and the processes it starts, never by
the rest of the machine, and it goes away with them even if the tests are killed.

Needs root (CAP_SYS_ADMIN). Where mounting is refused the test is skipped with one line,
except under CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

_CLONE_NEWNS = 0x00020000
_private = False


def mount_small_disk(path: Path, size: str) -> None:
    """A tmpfs of ``size`` (``2m``) at ``path`` (made if missing); unmount it with
    :func:`unmount`."""
    path.mkdir(parents=True, exist_ok=True)
    why = _enter_private_namespace() or _run(
        "mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)
    )
    if why:
        message = f"cannot mount a {size} tmpfs to fill up: {why}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI must run these tests as root)")
        pytest.skip(message)


def unmount(path: Path) -> None:
    _run("umount", "-l", str(path))


def _enter_private_namespace() -> str | None:
    """Move this process (its main thread, which runs the tests and starts their
    processes) into a mount namespace of its own, once; the reason when it cannot."""
    global _private
    if _private:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        return f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}"
    _private = True
    # Mounts made here must not propagate back to the namespace this one was copied from.
    return _run("mount", "--make-rprivate", "/")


def _run(*command: str) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return str(exc)
    return done.stderr.strip() or f"exit {done.returncode}" if done.returncode else None
