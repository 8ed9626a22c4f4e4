"""What the machine can hold, checked before a large allocation, and files allocated for real.

A size option that cannot fit (``--size 100000`` asks for 30 GB per image) must be one ``error:`` line before
anything is allocated, not an OOM kill or a SIGBUS hours later. :func:`require_memory` and :func:`require_disk`
compare a need with what is available (``MemAvailable`` of ``/proc/meminfo``, capped by a cgroup memory
limit; the file system's free space) and raise :class:`~dermsynth.errors.DermsynthError` naming the option.
:func:`allocate` reserves a file's blocks at once (``posix_fallocate``, else by writing zeros), so a memory map
of it never meets a full disk on a later write (which kills the process with SIGBUS, exit 135).
:func:`unwind_on_sigterm` lets a SIGTERM run the clean-ups of a block (temporary files) before the process ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from dermsynth.errors import DermsynthError

__all__ = ["allocate", "available_memory", "format_bytes", "require_disk", "require_memory", "unwind_on_sigterm"]

_ZEROS = 1 << 20  # bytes written per call when the file system cannot fallocate


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``: a size for messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unixes: free physical pages (an underestimate: no reclaimable cache)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_available() -> int | None:
    """Memory left under this process's cgroup limit (v2, else v1), or None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # v1 writes ~2^63 for no limit
            return max(0, limit - usage)
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping or meeting its cgroup limit; None if unknown."""
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(found) if found else None


def require_memory(need: int, what: str, option: str) -> None:
    """Raise one line naming ``option`` when ``need`` bytes (for ``what``) exceed the available memory."""
    available = available_memory()
    if available is not None and need > available:
        raise DermsynthError(f"{option}: {what} needs about {format_bytes(need)} of memory; "
                             f"{format_bytes(available)} is available")


def require_disk(need: int, folder: str | Path, what: str, option: str) -> None:
    """Raise one line naming ``option`` when ``need`` bytes (for ``what``) exceed the free space of ``folder``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will report what is wrong with the folder
    if need > free:
        raise DermsynthError(f"{option}: {what} needs {format_bytes(need)} on disk; {folder} has "
                             f"{format_bytes(free)} free")


def allocate(fd: int, offset: int, length: int) -> None:
    """Reserve bytes ``[offset, offset + length)`` of the open file ``fd`` on disk now, as zeros where nothing
    is written yet (a new memory map's data); a full disk raises ``OSError(ENOSPC)`` here."""
    if length <= 0:
        return
    try:
        os.posix_fallocate(fd, offset, length)
        return
    except AttributeError:  # no posix_fallocate on this platform
        pass
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    zeros = bytes(_ZEROS)  # the file system cannot preallocate: write the zeros
    for start in range(offset, offset + length, _ZEROS):
        os.pwrite(fd, zeros[: min(_ZEROS, offset + length - start)], start)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler of :func:`unwind_on_sigterm` (not an Exception: nothing catches it)."""


@contextlib.contextmanager
def unwind_on_sigterm() -> Iterator[None]:
    """Run the block so that a SIGTERM unwinds it like an exception (its ``except``/``finally`` clean-ups run,
    e.g. temporary files removed), then ends the process by that signal as before (exit status 143).

    Only where SIGTERM would kill the process outright (its default action, in the main thread): a handler
    someone installed (a training run's graceful stop) is left to do its job.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise _Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # the default action: the process ends here
        raise  # not reached
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
