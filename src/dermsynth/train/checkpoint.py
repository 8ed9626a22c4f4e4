"""Training checkpoints: atomic writes, one-line errors for bad files, and checks before a checkpoint is used.

Writing and reading go through :mod:`dermsynth.io` (a temporary file renamed over the target; a full disk or
a crash leaves the previous checkpoint intact and no temporary file). :func:`check_checkpoint` names what a
hand-made or foreign file lacks; :func:`assert_finite_weights` refuses weights of a diverged run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from dermsynth.errors import CheckpointError
from dermsynth.io import load_torch, remove_stale_temp, save_torch

__all__ = ["REQUIRED_KEYS", "WEIGHT_KEYS", "assert_finite_weights", "check_checkpoint", "load_checkpoint",
           "save_checkpoint"]

#: What sampling, translating, editing and the trainer read from a checkpoint (``generator_ema`` may be None).
REQUIRED_KEYS: tuple[str, ...] = ("config", "model", "model_options", "class_names", "step", "generator")
_MODEL_OPTION_KEYS: tuple[str, ...] = ("resolution",)  # z_dim, num_classes: not every model has them
#: The network weights in a checkpoint, checked by :func:`assert_finite_weights`.
WEIGHT_KEYS: tuple[str, ...] = ("generator", "generator_ema", "discriminator")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Save ``state`` to ``path`` so that a crash or a full disk mid-write never leaves a truncated checkpoint
    (nor a temporary file); failures are one :class:`~dermsynth.errors.DermsynthError` line naming ``path``."""
    path = Path(path)
    remove_stale_temp(path.parent)  # left by a run killed mid-write
    return save_torch(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (a run folder means its ``latest.pt``), with
    one-line :class:`~dermsynth.errors.CheckpointError` s for missing, corrupt and incomplete files."""
    path = Path(path)
    if path.is_dir():
        path = path / "latest.pt"
    state = load_torch(path, what="dermsynth checkpoint", map_location=map_location)
    check_checkpoint(state, path)
    return state


def check_checkpoint(state: Any, path: str | Path) -> None:
    """:class:`CheckpointError` naming the first thing a dermsynth checkpoint needs that ``state`` lacks."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a dermsynth checkpoint (a {type(state).__name__}, not a dict)")
    if "generator" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a dermsynth checkpoint (no generator/config)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (no {', '.join(missing)}); "
                              f"use a latest.pt written by `dermsynth train`")
    options = state["model_options"]
    if not isinstance(options, Mapping) or any(k not in options for k in _MODEL_OPTION_KEYS):
        lacking = [k for k in _MODEL_OPTION_KEYS if not isinstance(options, Mapping) or k not in options]
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (model_options lacks "
                              f"{', '.join(lacking)})")
    if not isinstance(state["generator"], Mapping):
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (generator is not a state dict)")


def _tensors(obj: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}.{i}")


def nonfinite_tensor(state: Mapping[str, Any] | torch.nn.Module) -> tuple[str, str] | None:
    """``(name, "NaN" | "inf")`` of the first floating tensor holding a non-finite value, or None.

    ``state``: a training checkpoint (its generator, EMA generator and discriminator are checked), any state
    dict, or a module (parameters and buffers). When every tensor is finite this costs one host sync.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if any(k in state for k in WEIGHT_KEYS):
        state = {k: state[k] for k in WEIGHT_KEYS if state.get(k) is not None}
    tensors = [(n, t) for n, t in _tensors(state, "") if t.is_floating_point() or t.is_complex()]
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
        return None
    name, tensor = next((n, t) for n, t in tensors if not bool(torch.isfinite(t).all()))
    return name, "NaN" if bool(torch.isnan(tensor).any()) else "inf"


def assert_finite_weights(state: Mapping[str, Any] | torch.nn.Module, path: str | Path) -> None:
    """:class:`CheckpointError` naming the first network tensor holding NaN or inf (a diverged run);
    ``state`` as :func:`nonfinite_tensor` takes it."""
    found = nonfinite_tensor(state)
    if found is not None:
        raise CheckpointError(f"{path}: {found[0]} holds {found[1]} weights (the run diverged); use an earlier "
                              f"checkpoint or train again with a lower learning rate")
