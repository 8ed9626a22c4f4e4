"""File I/O every layer shares: atomic writes, JSON, CSV, ``torch.save``/``torch.load``, all with one-line errors.

Writers go through a temporary file beside the target (``.<name>.<pid>.tmp``) that is renamed over it, so a
crash or a full disk never leaves a truncated file under the real name, and the temporary file is removed on
any failure. OS errors (an unwritable folder, a full disk) and torch's own write failures (``enforce fail at
inline_container.cc ... unexpected pos``) become one :class:`~dermsynth.errors.DermsynthError` line naming the
path. A process killed outright (SIGKILL) cannot clean up after itself: :func:`remove_stale_temp` removes its
temporary files on the next run, once their pid is no longer alive.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch

from dermsynth.errors import CheckpointError, DermsynthError

__all__ = ["append_csv_row", "atomic_open", "check_file_target", "check_writable_dir", "ensure_dir", "load_torch",
           "output_dir", "read_csv_rows", "read_json", "remove_stale_temp", "save_figure", "save_torch", "temp_path",
           "write_bytes", "write_csv", "write_json", "write_text"]

# .<name>.<pid>.tmp, optionally followed by a suffix (np.save appends .npy): what temp_path() makes.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """The temporary name a write of ``path`` by this process uses: ``.<name>.<pid>.tmp<suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")


def _reason(exc: BaseException, written: int | None = None, folder: Path | None = None) -> str:
    """Why a write failed, in a few words. torch's writer reports a full disk only as 'unexpected pos', so
    the free space left is compared with what had been written (``written`` bytes into ``folder``)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on device"
    if written is not None and folder is not None:
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(folder).free
            if free < written + (1 << 20):
                return f"no space left on device: {free / 2**20:.1f} MiB free"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return "the write stopped part-way; is the disk full?"


def _is_write_failure(exc: BaseException) -> bool:
    """An OS error, or torch's C++ writer failing (its message names inline_container / 'unexpected pos')."""
    if isinstance(exc, OSError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("inline_container" in text or "unexpected pos" in text
                                              or "file write failed" in text)


def write_error(path: str | Path, exc: BaseException, written: int | None = None) -> DermsynthError:
    """The one-line error for a failed write of ``path`` (``written``: bytes written before it failed)."""
    return DermsynthError(f"{path}: cannot write ({_reason(exc, written, Path(path).parent)})")


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def ensure_dir(path: str | Path, option: str | None = None) -> Path:
    """Create folder ``path`` (and its parents); one :class:`DermsynthError` line if that is impossible."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        hint = f"; choose another {option}" if option else ""
        what = "exists and is not a folder" if path.exists() and not path.is_dir() else (
            f"cannot create the folder ({_reason(exc)})")
        raise DermsynthError(f"{path}: {what}{hint}") from None
    return path


def check_writable_dir(path: str | Path, option: str | None = None) -> Path:
    """Create folder ``path`` and prove a file can be written in it (before any long computation).

    A probe file is created and removed: unlike ``os.access`` this also catches read-only file systems and
    runs as root.
    """
    path = ensure_dir(path, option)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        hint = f"; choose another {option}" if option else ""
        raise DermsynthError(f"{path}: cannot write there ({_reason(exc)}){hint}") from None
    return path


def _listed_in_manifest(folder: Path) -> set[str]:
    """The plain file names in the ``file`` column of ``folder/manifest.csv`` (none that leave the folder)."""
    rows = read_csv_rows(folder / "manifest.csv") if (folder / "manifest.csv").is_file() else []
    if not rows or "file" not in rows[0]:
        return set()
    col = rows[0].index("file")
    return {r[col] for r in rows[1:] if len(r) > col and r[col] and Path(r[col]).name == r[col]
            and not r[col].startswith(".")}


def output_dir(path: str | Path, option: str, *, overwrite: bool = False, ours: Sequence[str] = ()) -> Path:
    """A writable folder for a command's outputs that holds nothing from an earlier run.

    A folder that already holds files is refused (an earlier run's images beside a new, shorter manifest would
    be read as one set), unless ``overwrite``: then what a command writes there is removed first -- the files
    its ``manifest.csv`` lists and those matching the glob patterns ``ours`` (relative to the folder; a folder
    a pattern leaves empty is removed too) -- and nothing else.
    """
    path = check_writable_dir(path, option)
    remove_stale_temp(path)
    if overwrite:
        doomed = {path / name for name in _listed_in_manifest(path)}
        doomed |= {p for pattern in ours for p in path.glob(pattern)}
        for p in sorted(doomed, key=lambda p: -len(p.parts)):
            try:
                if p.is_file() or p.is_symlink():
                    p.unlink()
                elif p.is_dir() and p != path and not any(p.iterdir()):
                    p.rmdir()
            except OSError as exc:
                raise DermsynthError(f"{p}: cannot remove ({_reason(exc)})") from None
        for parent in sorted({p.parent for p in doomed if p.parent != path}, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                parent.rmdir()  # only succeeds when empty
        return path
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        raise DermsynthError(f"{option} {path} is not empty ({len(entries)} entries, e.g. {entries[0]}); choose an "
                             f"empty folder, or pass --overwrite to replace what an earlier run wrote there")
    return path


def check_file_target(path: str | Path, option: str) -> Path:
    """``path`` as the name of a file to write (before any long computation): a one-line error naming
    ``option`` when it is (or, ending in a slash, names) a folder, or its folder cannot be written."""
    text = str(path)
    path = Path(path)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise DermsynthError(f"{option} {text}: names a folder, but a file is written there; give a file name "
                             f"(e.g. {path}/NAME)")
    check_writable_dir(path.parent, option)
    return path


class _InterruptNoticingFile:
    """A file whose writes remember a Ctrl-C: torch's C++ writer turns an exception raised inside ``write`` (a
    second Ctrl-C arriving mid-checkpoint) into a RuntimeError ('unexpected pos') that no longer says so."""

    def __init__(self, f: IO) -> None:
        self._f = f
        self.interrupted = False

    def write(self, data):
        try:
            return self._f.write(data)
        except KeyboardInterrupt:
            self.interrupted = True
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, suffix: str = "") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it over ``path`` when the block succeeds.

    On any failure (an exception in the block, a full disk, Ctrl-C) the temporary file is removed and
    ``path`` keeps its previous content. Write failures are raised as one :class:`DermsynthError` line naming
    ``path``; a Ctrl-C during the write as a KeyboardInterrupt that says the write was interrupted.
    """
    path = Path(path)
    ensure_dir(path.parent)
    tmp = temp_path(path, suffix)
    f = None
    try:
        with open(tmp, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as raw:
            f = _InterruptNoticingFile(raw)
            yield f
        os.replace(tmp, path)
    except BaseException as exc:
        written = tmp.stat().st_size if tmp.exists() else None
        _unlink(tmp)
        if isinstance(exc, KeyboardInterrupt) or (f is not None and f.interrupted):
            raise KeyboardInterrupt(f"{path}: the write was interrupted; the previous file is kept") from None
        if _is_write_failure(exc):
            raise write_error(path, exc, written) from None
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Atomically save a matplotlib figure as PNG (``fig.savefig`` into the temporary file)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, default=None) -> Path:
    """Atomically write ``obj`` as JSON (with a final newline)."""
    return write_text(path, json.dumps(obj, indent=indent, default=default) + "\n")


def read_json(path: str | Path, what: str = "JSON file", error: type[DermsynthError] = DermsynthError) -> Any:
    """Parse a JSON file; a missing or malformed file is one ``error`` line naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None


def write_csv(path: str | Path, header: Sequence[str] | None, rows: Iterable[Sequence]) -> Path:
    """Atomically write a CSV file: ``header`` (if given), then ``rows``."""
    with atomic_open(path, "w") as f:
        writer = csv.writer(f)
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def append_csv_row(path: str | Path, header: Sequence[str], row: Sequence) -> None:
    """Append one row to a CSV log, writing ``header`` first when the file is new or empty."""
    path = Path(path)
    try:
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(header)
            writer.writerow(row)
    except OSError as exc:
        raise write_error(path, exc) from None


def read_csv_rows(path: str | Path) -> list[list[str]]:
    """Every row of a CSV file (header included) as lists of strings; ``[]`` for a missing or empty file."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DermsynthError(f"{path}: unreadable CSV ({exc})") from None


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically: a full disk or a crash mid-write leaves the previous file intact and no
    temporary file; failures are one :class:`DermsynthError` line naming ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_torch(path: str | Path, *, what: str = "dermsynth checkpoint", map_location: str | torch.device = "cpu",
               error: type[DermsynthError] = CheckpointError) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors: a missing file, a corrupt or foreign one."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        # Our files hold plain tensors, numbers, strings and RNG byte tensors only: no pickled code.
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for corrupt or foreign files
        raise error(f"{path}: not a readable {what} ({type(exc).__name__})") from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temp(directory: str | Path) -> list[Path]:
    """Remove the temporary files (``.<name>.<pid>.tmp[.ext]``) in ``directory`` whose writer is dead.

    Files of a live process (another run writing there now) are left alone. Returns the removed paths.
    """
    directory = Path(directory)
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match and entry.is_file() and not _pid_alive(int(match.group(1))):
            _unlink(entry)
            removed.append(entry)
    return removed
