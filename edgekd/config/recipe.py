"""Pipeline recipes (`pipelines/*.yaml`): what to compress and how. Every stage section is optional."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from edgekd.config._base import Strict
from edgekd.config.execution import ExecutionConfig
from edgekd.config.prune import PruneConfig
from edgekd.config.quantize import QuantizeConfig
from edgekd.config.training import LossTerm, TrainConfig


class ModelRef(Strict):
    """A zoo model (`resnet8`), or a user model `package.module:factory`, with its keyword arguments."""

    name: str = Field(description="zoo name or `package.module:factory`")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments of the model factory")
    checkpoint: Path | None = Field(None, description="weights to start from (edgekd checkpoint or state_dict)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from edgekd.models import MODELS

        if ":" not in name and name not in MODELS:
            raise ValueError(MODELS.unknown_message(name))
        return name


class DataConfig(Strict):
    """The data set and its splits; `params` are declared by each data set (see `edgekd zoo`)."""

    name: str = Field("digits", description="data set name")
    params: dict[str, Any] = Field(default_factory=dict, description="data set parameters")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="share of train held out for model selection")

    @model_validator(mode="after")
    def _check_params(self) -> DataConfig:
        from edgekd.data import DATASETS, dataset_params_model

        if self.name not in DATASETS:
            raise ValueError(DATASETS.unknown_message(self.name))
        self.__dict__["params"] = dataset_params_model(self.name).model_validate(self.params).model_dump()
        return self


class TeacherConfig(Strict):
    """The teacher: trained here (`train`), or loaded from `model.checkpoint` and used as is (`train: null`).

    With `ensemble: M` (M > 1) the teacher is M copies of `model` trained with seeds `seed`, `seed + 1`, ... (each a
    resumable step), and students distil from the mean of the members' logits (cached like any teacher's).
    """

    model: ModelRef
    train: TrainConfig | None = Field(default_factory=TrainConfig, description="training; null = use checkpoint")
    ensemble: int = Field(
        1, ge=1, le=16, description="members of an ensemble teacher: copies of `model` trained with seeds seed, "
        "seed + 1, ...; students distil from the mean of their logits (logit losses only); 1 = a single teacher"
    )

    @model_validator(mode="after")
    def _weights_from_somewhere(self) -> TeacherConfig:
        if self.train is None and self.model.checkpoint is None:
            raise ValueError("teacher.train is null, so teacher.model.checkpoint must name the teacher's weights")
        if self.ensemble > 1 and self.train is None:
            raise ValueError("teacher.ensemble trains its members: set teacher.train (or ensemble: 1 to use the "
                             "checkpoint as is)")
        return self


class StudentConfig(Strict):
    """The small model to deploy."""

    model: ModelRef


class AutoAssistantConfig(Strict):
    """Automatic teacher-assistant selection (stage `select-assistant`, AMD-style; see `edgekd.distill.assistants`).

    Candidates are trained cheaply with KD from the teacher and scored by how their validation accuracy bends with
    their scale (parameters / teacher parameters); the best one becomes the TA of the `auto` chain.
    """

    candidates: list[ModelRef] = Field(
        default_factory=list,
        description="candidate TAs; empty = a grid of the teacher's zoo family: every depth variant × `widths` whose "
        "parameter count lies strictly between student and teacher",
    )
    widths: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [1.0], min_length=1, description="width multipliers of the grid"
    )
    max_candidates: int = Field(4, ge=1, description="at most this many grid candidates, spread evenly in log-scale")
    limit_train: int | None = Field(
        None, ge=1, description="train every candidate on a seeded random subset of this many training images"
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(epochs=2), description="cheap training budget of each candidate"
    )


FUNCTION_MATCHING = "function_matching"


def function_matching_check(losses: list[LossTerm], ce_weight: float, train: TrainConfig, where: str) -> None:
    """Function matching (Beyer et al., CVPR 2022) trains on mixed views without labels: a recipe with the
    `function_matching` loss needs `ce_weight: 0` and mixup or CutMix in the training that uses it (`where`)."""
    if not any(term.name == FUNCTION_MATCHING for term in losses):
        return
    if ce_weight != 0:
        raise ValueError(f"loss {FUNCTION_MATCHING} has no label term: set distill.ce_weight: 0 (got {ce_weight}), "
                         "or use kd for a loss with one")
    if train.augment.mixup_alpha == 0 and train.augment.cutmix_alpha == 0:
        raise ValueError(f"loss {FUNCTION_MATCHING} matches the teacher on mixed views: set {where}.augment."
                         "mixup_alpha or cutmix_alpha above 0")


class DistillConfig(Strict):
    """Distillation of the student from the teacher: `ce_weight * CE + sum(weight_i * loss_i)`.

    With `assistants` (TAKD, Mirzadeh et al., AAAI 2020) the student ends a chain `teacher → assistants[0] → … →
    student`: each model is distilled from the one before it with the same losses and budget.
    """

    ce_weight: float = Field(1.0, ge=0, description="weight of the cross-entropy term")
    losses: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(name="kd", params={"temperature": 4.0})],
        description="distillation terms",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="student training (and each assistant's)")
    assistants: list[ModelRef] = Field(
        default_factory=list, description="teacher-assistant chain, largest first: teacher → assistants → student"
    )
    auto_assistant: AutoAssistantConfig | None = Field(
        None, description="choose one teacher assistant automatically (stage select-assistant)"
    )
    chain: Literal["manual", "auto"] | None = Field(
        None,
        description="chain of the deployed student: `manual` (the `assistants`) or `auto` (the selected TA); "
        "default: auto when auto_assistant is set, else manual",
    )

    @model_validator(mode="after")
    def _resolve_chain(self) -> DistillConfig:
        function_matching_check(self.losses, self.ce_weight, self.train, "distill.train")
        if self.chain is None:
            self.__dict__["chain"] = "auto" if self.auto_assistant is not None else "manual"
        if self.chain == "auto" and self.auto_assistant is None:
            raise ValueError("chain: auto needs an auto_assistant section")
        return self


AblationVariant = Literal["no-kd", "kd", "dkd", "takd", "auto-ta", "ta-grid"]


class AblationConfig(Strict):
    """Stage `ablation`: the student trained per variant and seed with one budget, test accuracy mean ± std.

    Variants: `no-kd` (cross-entropy only), `kd` (teacher → student with distill.losses), `dkd` (teacher → student
    with DKD at its published defaults), `takd` (teacher → distill.assistants → student), `auto-ta` (teacher → the
    TA chosen by select-assistant → student), `ta-grid` (teacher → each candidate select-assistant scored → student:
    one row per candidate, to check the automatic choice against the best of the grid).
    """

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="seeds of every variant")
    variants: list[AblationVariant] | None = Field(
        None, description="variants to train; default: no-kd, kd, plus takd / auto-ta when the recipe defines them"
    )
    train: TrainConfig | None = Field(None, description="budget of every model trained; default: distill.train")

    @field_validator("seeds", "variants")
    @classmethod
    def _unique(cls, values: list[Any] | None) -> list[Any] | None:
        if values is not None and len(set(values)) != len(values):
            raise ValueError(f"repeated entries in {values}")
        return values


class ExportConfig(Strict):
    """Exports for the device's runtimes, each checked against torch on real test inputs."""

    opset: int = Field(17, ge=11, le=23, description="ONNX opset")
    dynamic_batch: bool = Field(True, description="dynamic batch dimension")
    simplify: bool = Field(False, description="simplify the ONNX graph with onnxslim (parity-checked like any export)")
    parity_atol: float = Field(1e-3, gt=0, description="allowed |logit difference| vs torch: atol + rtol * |logit|")
    parity_rtol: float = Field(0.0, ge=0, description="allowed |logit difference| relative to the torch logit")
    min_top1_agreement: float = Field(0.999, ge=0, le=1, description="lowest top-1 agreement with torch")
    fp16_parity_atol: float = Field(0.05, gt=0, description="absolute part of the fp16 artifacts' logit tolerance")
    fp16_parity_rtol: float = Field(0.01, ge=0, description="relative part for fp16 (about 20 fp16 unit roundoffs)")
    fp16_min_top1_agreement: float = Field(0.99, ge=0, le=1, description="lowest top-1 agreement for fp16 artifacts")
    bf16_parity_atol: float = Field(0.25, gt=0, description="absolute part of the bf16 artifacts' logit tolerance")
    bf16_parity_rtol: float = Field(0.08, ge=0, description="relative part for bf16 (about 20 bf16 unit roundoffs)")
    bf16_min_top1_agreement: float = Field(0.98, ge=0, le=1, description="lowest top-1 agreement for bf16 artifacts")
    parity_samples: int = Field(512, ge=1, description="images the parity check compares on: validation images "
                                "(a seeded subset), topped up with seeded train images; never test images")


class EvaluateConfig(Strict):
    """Accuracy of every artifact on the validation and the test split, in its own runtime."""

    batch_size: int = Field(256, ge=1, description="evaluation batch size")


class BenchConfig(Strict):
    """Latency of every deployable artifact on the device."""

    batch_size: int = Field(1, ge=1, description="batch size of a timed call")
    warmup: int = Field(20, ge=0, description="untimed calls first")
    runs: int = Field(200, ge=1, description="timed calls")
    max_seconds: float = Field(30.0, gt=0, description="stop timing an artifact after this long")
    warmup_seconds: float = Field(0.0, ge=0, description="also warm up until this many seconds have passed")
    min_seconds: float = Field(0.0, ge=0, description="time at least this long (after `runs` calls, go on until it)")
    cv_threshold: float = Field(0.10, gt=0, description="flag a measurement unstable above this coefficient of "
                                "variation (std/mean; trtexec warns above 0.01 on a GPU)")
    profile_layers: int = Field(15, ge=0, description="keep the top N layers of each artifact's per-layer profile "
                                "(onnxruntime/openvino on a local device; 0: no profile)")
    batch_sizes: list[PositiveInt] = Field(default_factory=list, description="further batch sizes measured besides "
                                   "`batch_size` (throughput)")
    fleet: list[str] = Field(default_factory=list, description="further device profiles (names or YAML files) every "
                             "artifact is also timed on, besides the run's device: remote ones in parallel, local ones "
                             "one after another (docs/ray.md)")


SelectObjective = Literal["latency", "accuracy", "size"]


class SelectConfig(Strict):
    """Stage `select`: which artifact to deploy among those that meet every budget of the device.

    The reference is the most accurate artifact that meets the budgets; the contenders are the artifacts within
    `max_accuracy_drop` of it. `latency` (the default) deploys the fastest contender (at the device's
    `budgets.latency_stat`), `size` the smallest file, `accuracy` the reference itself (ties: lower latency, then
    smaller file).
    """

    objective: SelectObjective = Field(
        "latency", description="what to minimise among the contenders: latency, size, or accuracy (maximise it)"
    )
    max_accuracy_drop: float = Field(
        0.005, ge=0, le=1, description="largest accuracy drop (0-1; 0.005 = 0.5 points) below the most accurate "
        "artifact meeting the budgets; ignored by objective accuracy"
    )


class ReportConfig(Strict):
    """The human summary."""

    html: bool = Field(True, description="also write report.html")
    baseline: Path | None = Field(
        None, description="a baseline file of `edgekd baseline`: the report then shows the CI gate's table against "
        "it (default tolerances of `edgekd check`)"
    )


class Recipe(Strict):
    """A pipeline recipe. Sections left out are stages left out."""

    name: str = Field(description="recipe name, used in run folder names")
    description: str = Field("", description="one line for humans")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of every random choice (0 to 2³²−1)")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig | None = None
    student: StudentConfig | None = None
    distill: DistillConfig | None = None
    prune: PruneConfig | None = None
    quantize: QuantizeConfig | None = None
    export: ExportConfig | None = None
    evaluate: EvaluateConfig | None = None
    bench: BenchConfig | None = None
    select: SelectConfig = Field(
        default_factory=SelectConfig, description="selection objective (the select stage runs with `evaluate`)"
    )
    report: ReportConfig | None = None
    ablation: AblationConfig | None = None
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig,
                                       description="where independent sub-runs run (Ray or in-process)")

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.student is not None and self.distill is None:
            raise ValueError("student needs a distill section (use `losses: []` to train it without a teacher)")
        if self.distill is not None and self.student is None:
            raise ValueError("distill needs a student section")
        if self.distill is not None and self.distill.losses and self.teacher is None:
            raise ValueError("distill.losses need a teacher section (or set `losses: []`)")
        if self.distill is not None and self.teacher is not None and self.teacher.ensemble > 1:
            self._check_ensemble_losses(self.distill.losses)
        if self.distill is not None and (self.distill.assistants or self.distill.auto_assistant is not None):
            if not self.distill.losses:
                raise ValueError("distill.assistants / auto_assistant need distillation losses to learn from")
        if self.prune is not None and self.distill is None:
            raise ValueError("prune needs a student and a distill section (it prunes the distilled student)")
        if self.ablation is not None:
            self._check_ablation()
        return self

    @staticmethod
    def _check_ensemble_losses(losses: list[LossTerm]) -> None:
        """An ensemble teacher gives logits only: no feature losses."""
        from edgekd.distill.losses import LOSSES

        feature = [term.name for term in losses if LOSSES.entry(term.name).meta["kind"] != "logit"]
        if feature:
            raise ValueError(f"teacher.ensemble > 1 gives the mean of its members' logits, no features: "
                             f"distill.losses {', '.join(feature)} need a single teacher (ensemble: 1)")

    def _check_ablation(self) -> None:
        """Resolve the default variants; each variant needs the sections it trains from."""
        assert self.ablation is not None
        if self.distill is None:
            raise ValueError("ablation needs a student and a distill section")
        distill = self.distill
        if self.ablation.variants is None:
            variants = ["no-kd"] + (["kd"] if distill.losses else [])
            variants += ["takd"] if distill.assistants else []
            variants += ["auto-ta"] if distill.auto_assistant is not None else []
            self.ablation.__dict__["variants"] = variants
        if self.ablation.train is not None:
            function_matching_check(distill.losses, distill.ce_weight, self.ablation.train, "ablation.train")
        for variant in self.ablation.variants or []:
            if variant == "dkd" and self.teacher is None:
                raise ValueError("ablation variant 'dkd' needs a teacher")
            if variant not in ("no-kd", "dkd") and not distill.losses:
                raise ValueError(f"ablation variant {variant!r} needs distill.losses (and a teacher)")
            if variant == "takd" and not distill.assistants:
                raise ValueError("ablation variant 'takd' needs distill.assistants (the manual chain)")
            if variant in ("auto-ta", "ta-grid") and distill.auto_assistant is None:
                raise ValueError(f"ablation variant {variant!r} needs distill.auto_assistant")

