"""Device choice, CPU thread policy and precision guards shared by training, metrics and classifiers.

Precision (:func:`bf16_native`): bf16 autocast (and channels_last) is used where the hardware computes bf16
natively: CUDA GPUs with bf16, and CPUs with AVX512-BF16 or AMX (a DCGAN at 32 px trains 1.8x faster there, see
benchmarks/RESULTS.md). Elsewhere float32. ``DERMSYNTH_CPU_BF16=0`` / ``1`` overrides the CPU detection (the test
suite pins 0 so that its figures do not depend on the machine's CPU).

Thread policy (:func:`apply_thread_policy`, applied by the CLI): torch's default of one intra-op thread per
core is fastest on an idle machine but collapses beside another busy process, because OpenMP threads wait for
the slowest one at every barrier while spinning (seen: 300 DCGAN steps 42.8 s quiet, 230.5 s beside one busy
process). So the CLI uses the CPUs that other processes leave free, and OpenMP's ``PASSIVE`` wait policy
(idle threads sleep instead of spinning) so that load arriving later degrades the run gracefully. An explicit
``OMP_NUM_THREADS``, ``DERMSYNTH_THREADS`` or ``OMP_WAIT_POLICY`` always wins.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import time
import warnings
from typing import Iterator

# OpenMP reads its wait policy once, when torch loads it, so this must run before the first `import torch`
# (dermsynth/__init__.py sets it too, before any submodule loads torch); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from dermsynth.errors import DermsynthError


def valid_devices() -> list[str]:
    """The ``--device`` values this machine takes: auto, cpu, and cuda, cuda:0 ... when CUDA is available."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(gpus)] if gpus else [])


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything but cpu, cuda or cuda:N of a present GPU
    (tpu, mps, cuda:x, a CUDA request without CUDA) is a one-line error listing the valid devices."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device).strip()
    if re.fullmatch(r"cpu|cuda(:\d+)?", text):
        resolved = torch.device(text)
        if resolved.type == "cpu" or (torch.cuda.is_available()
                                      and (resolved.index or 0) < torch.cuda.device_count()):
            return resolved
    reason = " (CUDA is not available)" if text.startswith("cuda") and not torch.cuda.is_available() else ""
    raise DermsynthError(f"--device {text}: expected auto, cpu, cuda or cuda:N{reason}; valid here: "
                         f"{', '.join(valid_devices())}")


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


@functools.cache  # the CPU's flags do not change: read /proc/cpuinfo once per process
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no detection, float32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``: a CUDA GPU with bf16, or a CPU with native bf16
    (:func:`cpu_has_bf16`; ``DERMSYNTH_CPU_BF16=0|1`` overrides the detection)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    override = os.environ.get("DERMSYNTH_CPU_BF16", "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        raise DermsynthError(f"DERMSYNTH_CPU_BF16 must be 0 or 1, got {override!r}")
    return cpu_has_bf16()


def autocast_bf16(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (else a no-op context)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def runtime_info(device: torch.device, bf16: bool | None = None, channels_last: bool | None = None) -> dict:
    """Where a run ran, for its config.json: CPU results depend on the thread count that
    :func:`apply_thread_policy` chose (``DERMSYNTH_THREADS=N`` reproduces a recorded one) and on whether bf16
    autocast was used (``bf16``, ``channels_last``: what the run actually used, when given)."""
    info = {"device": str(device), "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if device.type == "cpu":
        info["cpu_bf16"] = cpu_has_bf16()
    if bf16 is not None:
        info["bf16"] = bool(bf16)
    if channels_last is not None:
        info["channels_last"] = bool(channels_last)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
