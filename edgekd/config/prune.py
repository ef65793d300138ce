"""The `prune` section of a recipe: LayerMerge depth compression under latency budgets measured on the device.

    prune:
      budgets: [0.6, 0.45]          # fractions of the unpruned student's measured latency
      budgets_ms: []                # and/or absolute whole-network budgets (ms)
      deploy: 0.45                  # which LayerMerge result replaces `student` (default: the tightest budget)
      baselines: [merge-only, prune-only]
      importance: {mode: finetune, steps: 50}
      finetune: {train: {epochs: 2, lr: 0.01}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.config._base import Strict
from edgekd.config.training import LossTerm, TrainConfig
from edgekd.runtimes import has_part

Baseline = Literal["merge-only", "prune-only"]
TABLE_RUNTIMES = tuple(name for name in RUNTIME_SPECS if has_part(name, "latency"))
"""Runtimes the latency table can be measured on (a ``latency`` module in their package), in the order a default is
picked."""

if TYPE_CHECKING:
    TableRuntime = str
else:
    TableRuntime = Literal[TABLE_RUNTIMES]


class PruneLatency(Strict):
    """How each latency-table entry is timed: the unpruned network with that one change applied, open beside the
    unpruned network and timed interleaved with it, in blocks of up to 20 calls of each."""

    batch_size: int | None = Field(None, ge=1, description="batch of a timed call; default: bench.batch_size, or 1")
    warmup: int = Field(10, ge=0, description="untimed calls of each network of a pair")
    runs: int = Field(50, ge=1, description="timed calls of each network of a pair (rounded up to whole blocks)")
    max_seconds: float = Field(2.0, gt=0, description="stop timing a pair after this long (at least one block)")
    statistic: Literal["p50", "p90", "mean", "min"] = Field(
        "p50", description="summary of each entry's timed calls that the DP adds up (min: the fastest call, the one "
                           "other load on the machine touched least)")
    resolution_ms: float = Field(0.001, gt=0, description="time step of the DP's discretised latency")


class PruneImportance(Strict):
    """Importance of each table entry: accuracy on validation after applying only that change."""

    mode: Literal["finetune", "proxy"] = Field(
        "finetune", description="finetune: `steps` SGD steps of CE, as the paper; proxy (not in the paper, much "
        "cheaper): BN statistics re-estimated on `steps` batches, no gradient step")
    steps: int = Field(50, ge=0, description="fine-tuning steps (or BN batches) per entry")
    batch_size: int = Field(64, ge=1, description="batch size of those steps")
    lr: float = Field(0.01, gt=0, description="SGD learning rate (finetune)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (finetune)")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay (finetune)")


class PruneTrain(TrainConfig):
    """Fine-tuning of each pruned network: a few epochs at a small learning rate."""

    epochs: int = Field(2, ge=1, description="number of epochs")
    lr: float = Field(0.01, gt=0, description="peak learning rate")


class PruneFinetune(Strict):
    """Fine-tuning of every pruned network with distillation from the unpruned student (logit losses)."""

    ce_weight: float = Field(0.5, ge=0, description="weight of cross-entropy")
    losses: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(name="kd", weight=0.5, params={"temperature": 4.0})],
        description="distillation terms from the unpruned student (logit losses)")
    train: PruneTrain = Field(default_factory=PruneTrain, description="fine-tuning schedule")


class PruneConfig(Strict):
    """LayerMerge (Kim et al., ICML 2024) on the distilled student, with the merge-only and prune-only baselines."""

    method: Literal["layermerge"] = Field("layermerge", description="depth-compression method deployed")
    budgets: list[Annotated[float, Field(gt=0, lt=1)]] = Field(
        default_factory=lambda: [0.6], description="latency budgets as fractions of the unpruned student's latency "
        "measured on the device's runtime")
    budgets_ms: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=list, description="latency budgets in milliseconds (whole network, same runtime)")
    deploy: float | str | None = Field(
        None, description="budget whose LayerMerge result replaces `student`: a fraction of `budgets`, or "
        "'<ms>ms' of `budgets_ms`; default: the tightest budget")
    baselines: list[Baseline] = Field(["merge-only", "prune-only"], description="baselines at every budget")
    runtime: TableRuntime | None = Field(
        None, description="runtime of the latency table; default: the device's first runtime the table supports")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="precision the table is timed in")
    max_kernel: int | None = Field(7, ge=1, description="largest merged kernel considered (null: every option)")
    latency: PruneLatency = Field(default_factory=PruneLatency)
    importance: PruneImportance = Field(default_factory=PruneImportance)
    finetune: PruneFinetune = Field(default_factory=PruneFinetune)

    @field_validator("budgets", "budgets_ms", "baselines")
    @classmethod
    def _unique(cls, values: list[object]) -> list[object]:
        if len(set(values)) != len(values):
            raise ValueError(f"repeated entries in {values}")
        return values

    @model_validator(mode="after")
    def _deploy_is_a_budget(self) -> PruneConfig:
        labels = self.labels()
        if not labels:
            raise ValueError("give at least one budget (budgets or budgets_ms)")
        if self.deploy is not None and self.deploy_label() not in labels:
            raise ValueError(f"deploy {self.deploy!r} is not one of the budgets {labels}")
        return self

    def labels(self) -> list[str]:
        """Budget labels, as in artifact names: ``0.6`` for a fraction, ``2.5ms`` for milliseconds."""
        return [budget_label(f) for f in self.budgets] + [budget_label(m, ms=True) for m in self.budgets_ms]

    def deploy_label(self) -> str:
        """The label of the deployed budget (given, or the tightest fraction, else the tightest ms budget)."""
        if isinstance(self.deploy, str):
            return self.deploy
        if self.deploy is not None:
            return budget_label(self.deploy)
        return budget_label(min(self.budgets)) if self.budgets else budget_label(min(self.budgets_ms), ms=True)


def budget_label(value: float, *, ms: bool = False) -> str:
    """``0.6`` / ``2.5ms``: a budget as it appears in artifact names and in ``deploy``."""
    return f"{value:g}ms" if ms else f"{value:g}"
