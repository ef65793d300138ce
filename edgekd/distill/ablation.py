"""Does distillation pay on this data? The ablation's variants and its summary table (mean ± std over seeds).

Every variant trains the same student architecture with the same budget and seeds (and, per seed, the same initial
weights: see :mod:`edgekd.distill.chain`); only what it learns from changes:

- ``no-kd``: cross-entropy only, no teacher;
- ``kd``: teacher → student with the recipe's losses (Hinton et al. 2015, or whatever the recipe distils with);
- ``dkd``: teacher → student with Decoupled KD at its published defaults (:func:`dkd_term`);
- ``takd``: teacher → the recipe's assistants → student (Mirzadeh et al., AAAI 2020);
- ``auto-ta``: teacher → the assistant chosen by ``select-assistant`` → student (:mod:`edgekd.distill.assistants`);
- ``ta-grid``: teacher → each candidate ``select-assistant`` scored → student, one row ``ta-grid:<candidate>`` each:
  the full grid the automatic choice is checked against (:func:`grid_check`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from edgekd.config import LossTerm

VARIANTS: dict[str, str] = {
    "no-kd": "cross-entropy only",
    "kd": "teacher → student",
    "dkd": "teacher → student with DKD (α 1, β 8, T 4)",
    "takd": "teacher → manual assistants → student",
    "auto-ta": "teacher → selected assistant → student",
    "ta-grid": "teacher → each candidate assistant → student",
}
GRID_PREFIX = "ta-grid:"


def dkd_term(epochs: int) -> LossTerm:
    """DKD (Zhao et al., CVPR 2022) with mdistiller's CIFAR-100 defaults: ``α·TCKD + β·NCKD``, α 1, β 8, T 4, beside
    cross-entropy of weight 1; the linear warm-up keeps mdistiller's share of the schedule (20 of 240 epochs),
    at least one epoch."""
    warmup = max(1, round(epochs * 20 / 240))
    return LossTerm(name="dkd", params={"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": warmup})


def summarize(runs: list[dict[str, Any]], variants: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variant: test accuracies by seed, their mean and sample standard deviation (ddof = 1), at the best
    epoch on validation (the weights edgekd keeps) and, where the runs record it, at the last epoch.

    ``gain`` is the mean's difference to the ``no-kd`` mean (None without a no-kd variant); ``finding`` applies the
    spread rule to it: True when ``|gain|`` exceeds the larger of the two rows' standard deviations (None without
    no-kd, or with a single seed). ``std`` is None for a single seed; ``same_chain_as`` names an earlier variant
    that trained the very same chain (else None).
    """
    rows = []
    for variant in variants:
        mine = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
        accuracies = [r["test_accuracy"] for r in mine]
        if not accuracies:
            raise ValueError(f"no runs of variant {variant!r}")
        last = [r["last_test_accuracy"] for r in mine] if all("last_test_accuracy" in r for r in mine) else None
        rows.append({
            "variant": variant,
            "seeds": [r["seed"] for r in mine],
            "accuracies": accuracies,
            "mean": statistics.fmean(accuracies),
            "std": _std(accuracies),
            "last_accuracies": last,
            "last_mean": statistics.fmean(last) if last else None,
            "last_std": _std(last) if last else None,
            "chain": mine[0]["chain"],
            "same_chain_as": mine[0].get("same_chain_as"),
        })
    baseline = next((row for row in rows if row["variant"] == "no-kd"), None)
    for row in rows:
        row["gain"] = None if baseline is None else row["mean"] - baseline["mean"]
        spread = None if baseline is None or row["std"] is None else max(row["std"], baseline["std"])
        row["finding"] = None if spread is None or row is baseline else abs(row["gain"]) > spread
    return rows


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def grid_check(table: list[dict[str, Any]], selected: str) -> dict[str, Any]:
    """The automatically selected assistant against the best of the ``ta-grid`` rows (by mean test accuracy).

    ``gap`` is the best grid mean minus the selected candidate's grid mean (0 when the choice is the grid's best);
    ``spread`` the larger of the two rows' standard deviations; ``finding`` says whether the gap exceeds that spread
    (only then is the choice called worse than the grid's best). ``rank`` is 1 + the number of grid rows with a
    higher mean.
    """
    grid = sorted((row for row in table if row["variant"].startswith(GRID_PREFIX)), key=lambda r: -r["mean"])
    chosen = next((row for row in grid if row["variant"] == GRID_PREFIX + selected), None)
    if chosen is None:
        raise ValueError(f"no ta-grid row for the selected assistant {selected!r}")
    best = grid[0]
    gap = best["mean"] - chosen["mean"]
    spread = max(row["std"] or 0.0 for row in (best, chosen))
    rank = 1 + sum(row["mean"] > chosen["mean"] for row in grid)
    return {"selected": selected, "best": best["variant"].removeprefix(GRID_PREFIX), "gap": gap, "spread": spread,
            "rank": rank, "candidates": len(grid), "finding": gap > spread}
