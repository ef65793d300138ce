"""Does distillation pay on this data? The ablation's variants and its summary table (mean ± std over seeds).

Every variant trains the same student architecture with the same budget and seeds (and, per seed, the same initial
weights: see :mod:`edgekd.distill.chain`); only what it learns from changes:

- ``no-kd``: cross-entropy only, no teacher;
- ``kd``: teacher → student with the recipe's losses (Hinton et al. 2015, or whatever the recipe distils with);
- ``dkd``: teacher → student with Decoupled KD at its published defaults (:func:`dkd_term`);
- ``takd``: teacher → the recipe's assistants → student (Mirzadeh et al., AAAI 2020);
- ``auto-ta``: teacher → the assistant chosen by ``select-assistant`` → student (:mod:`edgekd.distill.assistants`).
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
}


def dkd_term(epochs: int) -> LossTerm:
    """DKD (Zhao et al., CVPR 2022) with mdistiller's CIFAR-100 defaults: ``α·TCKD + β·NCKD``, α 1, β 8, T 4, beside
    cross-entropy of weight 1; the linear warm-up keeps mdistiller's share of the schedule (20 of 240 epochs),
    at least one epoch."""
    warmup = max(1, round(epochs * 20 / 240))
    return LossTerm(name="dkd", params={"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": warmup})


def summarize(runs: list[dict[str, Any]], variants: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variant: test accuracies by seed, their mean and sample standard deviation (ddof = 1).

    ``gain`` is the mean's difference to the ``no-kd`` mean (None without a no-kd variant); ``std`` is None for a
    single seed; ``same_chain_as`` names an earlier variant that trained the very same chain (else None).
    """
    rows = []
    for variant in variants:
        mine = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
        accuracies = [r["test_accuracy"] for r in mine]
        if not accuracies:
            raise ValueError(f"no runs of variant {variant!r}")
        rows.append({
            "variant": variant,
            "seeds": [r["seed"] for r in mine],
            "accuracies": accuracies,
            "mean": statistics.fmean(accuracies),
            "std": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
            "chain": mine[0]["chain"],
            "same_chain_as": mine[0].get("same_chain_as"),
        })
    baseline = next((row["mean"] for row in rows if row["variant"] == "no-kd"), None)
    for row in rows:
        row["gain"] = None if baseline is None else row["mean"] - baseline
    return rows
