"""Divergence that stays finite: statistics and weights far outside the run's own history.

A run whose learning rate is far too high rarely reaches NaN at once: its losses climb to 1e12-1e14 and its
weights to ~1e30 while every value is still a float (issue 18). :class:`DivergenceCheck` therefore looks at
magnitudes as well as at NaN/inf, each against the run's own history, so that no threshold depends on the
model or the loss:

* a logged statistic (a column of ``losses.csv``) diverges when ``|value| > STAT_FACTOR x max(median |value| of
  the last HISTORY_ROWS log rows, STAT_FLOOR)``, once MIN_HISTORY rows exist. Healthy GAN statistics move within
  one or two orders of magnitude of their median (a discriminator loss near 0.01 that spikes to 5 is x500);
  ``STAT_FACTOR`` = 1e4 leaves that room and still flags the 1e12 explosions at their first log row. The floor
  keeps statistics whose median is ~0 (logits, a penalty that starts at 0) from flagging ordinary values: a
  statistic is flagged only beyond 1e4 in absolute terms;
* a network's weights diverge when their root mean square exceeds ``WEIGHT_FACTOR`` = 1e4 x its RMS at
  initialisation (kept in the checkpoint, so a resumed run compares with the same start). Training moves a
  network's RMS by a small factor (weight decay-free Adam: typically < 10x); 1e4x is an explosion, and it is
  caught also when the statistics explode from the first log row on (no history yet).

The check runs where the trainer reads the statistics anyway (every ``--log-every`` steps) and before every
checkpoint, so a diverged state is never written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from dermsynth.checkpoint import nonfinite_tensor

__all__ = ["DivergenceCheck", "HISTORY_ROWS", "MIN_HISTORY", "STAT_FACTOR", "STAT_FLOOR", "WEIGHT_FACTOR",
           "not_finite", "weight_rms"]

STAT_FACTOR = 1e4
STAT_FLOOR = 1.0
WEIGHT_FACTOR = 1e4
HISTORY_ROWS = 200  # the running median's window, in log rows
MIN_HISTORY = 3     # log rows before the statistics are compared with their median


def weight_rms(module: nn.Module) -> float:
    """Root mean square of every floating parameter of ``module`` (one host sync)."""
    params = [p.detach() for p in module.parameters() if p.is_floating_point()]
    if not params:
        return 0.0
    squares = torch.stack([p.float().square().sum() for p in params]).sum()
    return math.sqrt(float(squares) / sum(p.numel() for p in params))


class DivergenceCheck:
    """The run's history of logged statistics and initial weight RMS, and the checks against them."""

    def __init__(self, stat_names: Iterable[str], networks: Mapping[str, nn.Module]) -> None:
        self.stat_names = list(stat_names)
        self.history: list[list[float]] = []
        self.initial_rms = {name: weight_rms(net) for name, net in networks.items()}

    def statistics(self, values: list[float]) -> list[str]:
        """Reasons the logged ``values`` (one per statistic) show divergence; the row joins the history when
        there are none."""
        reasons = not_finite([k for k, v in zip(self.stat_names, values) if not math.isfinite(v)])
        if not reasons and len(self.history) >= MIN_HISTORY:
            for i, (k, v) in enumerate(zip(self.stat_names, values)):
                typical = max(_median([abs(row[i]) for row in self.history]), STAT_FLOOR)
                if abs(v) > STAT_FACTOR * typical:
                    reasons.append(f"{k} = {v:.3g}, beyond {STAT_FACTOR:.0e} x its running median {typical:.3g}")
        if not reasons:
            self.history = (self.history + [list(values)])[-HISTORY_ROWS:]
        return reasons

    def weights(self, networks: Mapping[str, nn.Module | None]) -> list[str]:
        """Reasons the networks' weights show divergence: a non-finite value, or an RMS beyond
        ``WEIGHT_FACTOR`` x its initial RMS."""
        for name, net in networks.items():
            if net is None:
                continue
            found = nonfinite_tensor(net)
            if found is not None:
                return [f"weights ({name}.{found[0]}: {found[1]}) not finite"]
            start = self.initial_rms.get(name.removesuffix(" (EMA)"), 0.0)
            rms = weight_rms(net)
            if start > 0 and rms > WEIGHT_FACTOR * start:
                return [f"weights of {name}: RMS {rms:.3g}, beyond {WEIGHT_FACTOR:.0e} x its initial {start:.3g}"]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(row) for row in self.history], "initial_rms": dict(self.initial_rms)}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore a checkpoint's history (checkpoints before this check: keep the RMS measured now, i.e. of
        the weights the run resumes from)."""
        if state:
            self.history = [list(map(float, row)) for row in state.get("history", [])]
            self.initial_rms.update({k: float(v) for k, v in state.get("initial_rms", {}).items()})


def not_finite(names: list[str]) -> list[str]:
    """The reason for non-finite statistics ``names`` (none when empty)."""
    return [f"{', '.join(names)} not finite"] if names else []


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
