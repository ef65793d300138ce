"""Does distillation pay on this data? The ablation's variants and its summary table (mean ± std over seeds).

Every variant trains the same student architecture with the same budget and seeds (and, per seed, the same initial
weights: see :mod:`edgekd.distill.chain`); only what it learns from changes:

- ``no-kd``: cross-entropy only, no teacher;
- ``kd``: teacher → student (Hinton et al. 2015, or the recipe's losses);
- ``takd``: teacher → the recipe's assistants → student (Mirzadeh et al., AAAI 2020);
- ``auto-ta``: teacher → the assistant chosen by ``select-assistant`` → student (:mod:`edgekd.distill.assistants`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

VARIANTS: dict[str, str] = {
    "no-kd": "cross-entropy only",
    "kd": "teacher → student",
    "takd": "teacher → manual assistants → student",
    "auto-ta": "teacher → selected assistant → student",
}


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
