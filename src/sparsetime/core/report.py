"""Per-layer report of a sparsifier: the table printed before training and read by tools."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .exploration import ExplorationTracker
from .store import LayerStore


def layer_report(stores: Mapping[str, LayerStore], targets: Mapping[str, float | None],
                 tracker: ExplorationTracker) -> list[dict]:
    """Per layer: name, shape, size, active count, density, target density, Rs, execution."""
    rows = []
    for n, s in stores.items():
        count = s.count()
        rows.append({"name": n, "shape": s.shape, "size": s.size, "active": count, "density": count / s.size,
                     "target_density": targets[n], "itop_rate": tracker.layer_rate(n), "execution": s.execution})
    return rows


def masks_report(masks: Mapping[str, torch.Tensor]) -> list[dict]:
    """The layer report of a method that keeps bool masks and tracks no exploration (Rs None)."""
    rows = []
    for n, m in masks.items():
        active = int(m.sum().item())
        rows.append({"name": n, "shape": tuple(m.shape), "size": m.numel(), "active": active,
                     "density": active / m.numel(), "itop_rate": None})
    return rows


def format_layer_table(rows: list[dict]) -> str:
    """The report as a fixed-width text table (layer, shape, N_l, d_l, n_l, Rs, execution)."""
    lines = [f"{'layer':<32} {'shape':<20} {'N_l':>10} {'d_l':>8} {'n_l':>10} {'Rs':>7} {'exec':>6}"]
    for r in rows:
        lines.append(f"{r['name']:<32} {str(r['shape']):<20} {r['size']:>10} {r['density']:>8.4f} "
                     f"{r['active']:>10} {r['itop_rate']:>7.4f} {r['execution']:>6}")
    return "\n".join(lines)
