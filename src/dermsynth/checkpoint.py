"""Training checkpoints: atomic writes, one-line errors for bad files, and checks before a checkpoint is used.

Writing and reading go through :mod:`dermsynth.io` (a temporary file renamed over the target; a full disk or
a crash leaves the previous checkpoint intact and no temporary file). :func:`check_checkpoint` names what a
hand-made or foreign file lacks; :func:`assert_finite_weights` refuses weights of a diverged run.

The layout (``format`` :data:`FORMAT`): ``networks`` (name -> state dict, the names the training step and
the registry builder use), ``ema`` (name -> state dict of the EMA copy; empty without one), ``optimizers``
(name -> optimizer state), ``sampled`` (the network a sampler rebuilds) and ``sampled_inputs`` (the batch
fields it takes), beside the config, step, RNG and sampler states. Checkpoints of the earlier layout
(``dermsynth-gan-2``: ``generator``, ``discriminator``, ``generator_ema``, ``opt_g``, ``opt_d``) are read
through :func:`upgrade_checkpoint`, so they keep sampling and resuming.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from dermsynth.errors import CheckpointError
from dermsynth.io import load_torch, remove_stale_temp, save_torch

__all__ = ["FORMAT", "REQUIRED_KEYS", "WEIGHT_KEYS", "assert_finite_weights", "check_checkpoint", "load_checkpoint",
           "save_checkpoint", "upgrade_checkpoint"]

FORMAT = "dermsynth-3"
#: What sampling, translating, editing and the trainer read from a checkpoint.
REQUIRED_KEYS: tuple[str, ...] = ("config", "model", "model_options", "class_names", "step", "networks", "sampled")
_MODEL_OPTION_KEYS: tuple[str, ...] = ("resolution",)  # z_dim, num_classes: not every model has them
#: The network weights in a checkpoint, checked by :func:`assert_finite_weights`.
WEIGHT_KEYS: tuple[str, ...] = ("networks", "ema")
#: format 2 -> 3: the GAN's fixed keys and the names its networks and optimizers have now
_FORMAT_2_NETWORKS = {"generator": "generator", "discriminator": "discriminator"}
_FORMAT_2_OPTIMIZERS = {"opt_g": "generator", "opt_d": "discriminator"}


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
    state = upgrade_checkpoint(load_torch(path, what="dermsynth checkpoint", map_location=map_location))
    check_checkpoint(state, path)
    return state


def upgrade_checkpoint(state: Any) -> Any:
    """A checkpoint of the pre-protocol layout (``generator``/``discriminator``/``generator_ema``/``opt_g``/
    ``opt_d``) in the current one (:data:`FORMAT`); anything else is returned as it is."""
    if not isinstance(state, Mapping) or "networks" in state or "generator" not in state:
        return state
    old = dict(state)
    new = {k: v for k, v in old.items() if k not in (*_FORMAT_2_NETWORKS, *_FORMAT_2_OPTIMIZERS, "generator_ema",
                                                        "generator_inputs")}
    new["networks"] = {name: old[key] for key, name in _FORMAT_2_NETWORKS.items() if key in old}
    new["ema"] = {} if old.get("generator_ema") is None else {"generator": old["generator_ema"]}
    new["optimizers"] = {name: old[key] for key, name in _FORMAT_2_OPTIMIZERS.items() if key in old}
    new["sampled"] = "generator"
    if old.get("generator_inputs") is not None:
        new["sampled_inputs"] = old["generator_inputs"]
    new["format"] = f"{old.get('format', 'dermsynth-gan')} (read as {FORMAT})"
    return new


def check_checkpoint(state: Any, path: str | Path) -> None:
    """:class:`CheckpointError` naming the first thing a dermsynth checkpoint needs that ``state`` lacks."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: not a dermsynth checkpoint (a {type(state).__name__}, not a dict)")
    if "networks" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a dermsynth checkpoint (no networks/config)")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (no {', '.join(missing)}); "
                              f"use a latest.pt written by `dermsynth train`")
    options = state["model_options"]
    if not isinstance(options, Mapping) or any(k not in options for k in _MODEL_OPTION_KEYS):
        lacking = [k for k in _MODEL_OPTION_KEYS if not isinstance(options, Mapping) or k not in options]
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (model_options lacks "
                              f"{', '.join(lacking)})")
    networks, sampled = state["networks"], state["sampled"]
    if not isinstance(networks, Mapping) or not isinstance(networks.get(sampled), Mapping):
        raise CheckpointError(f"{path}: incomplete dermsynth checkpoint (no state dict of its sampled network "
                              f"{sampled!r})")


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

    ``state``: a training checkpoint (its networks and EMA copies are checked), any state dict, or a module
    (parameters and buffers). When every tensor is finite this costs one host sync.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    state = upgrade_checkpoint(state)
    if any(k in state for k in WEIGHT_KEYS):  # networks by their names, EMA copies as "ema.<name>"
        state = {**state.get("networks", {}), "ema": state.get("ema") or {}}
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
