"""Device choice, CPU thread policy and precision guards shared by training, metrics and classifiers.

Thread policy (:func:`apply_thread_policy`, applied by the CLI): torch's default of one intra-op thread per
core is fastest on an idle machine but collapses beside another busy process, because OpenMP threads wait for
the slowest one at every barrier while spinning (seen: 300 DCGAN steps 42.8 s quiet, 230.5 s beside one busy
process). So the CLI uses the CPUs that other processes leave free, and OpenMP's ``PASSIVE`` wait policy
(idle threads sleep instead of spinning) so that load arriving later degrades the run gracefully. An explicit
``OMP_NUM_THREADS``, ``DERMSYNTH_THREADS`` or ``OMP_WAIT_POLICY`` always wins.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from typing import Iterator

# OpenMP reads its wait policy once, when torch loads it, so this must run before the first `import torch`
# (dermsynth/__init__.py sets it too, before any submodule loads torch); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from dermsynth.errors import DermsynthError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; a CUDA request without CUDA is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DermsynthError(f"device {device} requested but CUDA is not available")
    return device


@contextlib.contextmanager
def full_fp32_matmul(device: torch.device) -> Iterator[None]:
    """Full-precision float32 matmuls on CUDA even if the caller enabled TF32 globally (metrics need it)."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prev = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.set_float32_matmul_precision(prev)


THREADS_ENV = "DERMSYNTH_THREADS"
_TORCH_DEFAULT_THREADS = torch.get_num_threads()  # one per physical core: more (hyperthreads) does not help


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_now(samples: int = 3, interval_s: float = 0.01) -> int | None:
    """Runnable tasks on the machine besides this one: the least of a few reads of /proc/stat's procs_running."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/stat") as f:
                counts += [int(line.split()[1]) for line in f if line.startswith("procs_running")]
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, min(counts) - 1) if counts else None  # minus this process, which is running to read it


def busy_cpus() -> int:
    """CPUs other processes keep busy: the larger of the runnable tasks now and the 1-minute load average."""
    now = _running_now() or 0
    try:
        recent = math.floor(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):
        recent = 0
    return max(now, recent)


def choose_threads(cpus: int | None = None, busy: int | None = None) -> int:
    """Intra-op threads for CPU work: the available CPUs minus the busy ones (at most torch's default of one
    per physical core), at least 1.

    ``DERMSYNTH_THREADS`` (or ``OMP_NUM_THREADS``) set by the user is taken as it is.
    """
    for env in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(env, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise DermsynthError(f"${env} must be a whole number of threads, got {value!r}") from None
    cpus = available_cpus() if cpus is None else cpus
    busy = busy_cpus() if busy is None else busy
    return max(1, min(cpus - busy, _TORCH_DEFAULT_THREADS))


def user_threads() -> int | None:
    """The thread count the user set through ``DERMSYNTH_THREADS`` / ``OMP_NUM_THREADS``, else None."""
    if any(os.environ.get(env, "").strip() for env in (THREADS_ENV, "OMP_NUM_THREADS")):
        return choose_threads()
    return None


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` intra-op CPU threads (restored afterwards), unless the user set a count
    (:func:`user_threads`) or ``threads`` is None; yields the count in use."""
    before = torch.get_num_threads()
    wanted = user_threads() or threads or before
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def apply_thread_policy() -> int:
    """Set torch's intra-op threads by :func:`choose_threads`; returns the number chosen."""
    threads = choose_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def runtime_info(device: torch.device) -> dict:
    """Where a run ran, for its config.json: CPU results depend on the thread count that
    :func:`apply_thread_policy` chose (``DERMSYNTH_THREADS=N`` reproduces a recorded one)."""
    info = {"device": str(device), "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
