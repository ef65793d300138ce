"""Pipeline recipes (`pipelines/*.yaml`): what to compress and how. Every stage section is optional."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edgekd.config._base import Strict


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


class Augment(Strict):
    """Batch augmentation on tensors, seeded."""

    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels")
    hflip: bool = Field(False, description="random horizontal flip")


class TrainConfig(Strict):
    """One training run: optimiser, schedule, regularisation. The best epoch is chosen on the validation split."""

    epochs: int = Field(10, ge=1, description="number of epochs")
    batch_size: int = Field(64, ge=1, description="mini-batch size")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="optimiser")
    lr: float = Field(0.05, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay")
    schedule: Literal["cosine", "multistep", "constant"] = Field("cosine", description="learning-rate schedule")
    milestones: list[int] = Field(default_factory=list, description="epochs where multistep multiplies lr by gamma")
    gamma: float = Field(0.1, gt=0, description="multistep factor")
    warmup_epochs: int = Field(0, ge=0, description="linear learning-rate warm-up epochs")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")
    augment: Augment = Field(default_factory=Augment, description="batch augmentation")


class TeacherConfig(Strict):
    """The teacher: trained here (`train`), or loaded from `model.checkpoint` and used as is (`train: null`)."""

    model: ModelRef
    train: TrainConfig | None = Field(default_factory=TrainConfig, description="training; null = use checkpoint")

    @model_validator(mode="after")
    def _weights_from_somewhere(self) -> TeacherConfig:
        if self.train is None and self.model.checkpoint is None:
            raise ValueError("teacher.train is null, so teacher.model.checkpoint must name the teacher's weights")
        return self


class StudentConfig(Strict):
    """The small model to deploy."""

    model: ModelRef


class LossTerm(Strict):
    """One distillation term, added to the cross-entropy with `weight`."""

    name: str = Field(description="loss name (see `edgekd zoo`)")
    weight: float = Field(1.0, ge=0, description="weight of this term in the total loss")
    params: dict[str, Any] = Field(default_factory=dict, description="hyper-parameters of the loss")
    student_taps: list[str] = Field(default_factory=list, description="student module paths (feature losses)")
    teacher_taps: list[str] = Field(default_factory=list, description="teacher module paths (feature losses)")

    @model_validator(mode="after")
    def _check(self) -> LossTerm:
        from edgekd.distill.losses import LOSSES

        if self.name not in LOSSES:
            raise ValueError(LOSSES.unknown_message(self.name))
        if len(self.student_taps) != len(self.teacher_taps):
            raise ValueError("student_taps and teacher_taps must pair up (same length)")
        return self


class DistillConfig(Strict):
    """Distillation of the student from the teacher: `ce_weight * CE + sum(weight_i * loss_i)`."""

    ce_weight: float = Field(1.0, ge=0, description="weight of the cross-entropy term")
    losses: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(name="kd", params={"temperature": 4.0})],
        description="distillation terms",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="student training")


class ExportConfig(Strict):
    """Exports for the device's runtimes, each checked against torch on real test inputs."""

    opset: int = Field(17, ge=11, le=23, description="ONNX opset")
    dynamic_batch: bool = Field(True, description="dynamic batch dimension")
    parity_atol: float = Field(1e-3, gt=0, description="largest allowed |logit difference| vs torch")
    min_top1_agreement: float = Field(0.999, ge=0, le=1, description="lowest top-1 agreement with torch")
    parity_samples: int = Field(512, ge=1, description="test images used for the parity check")


class EvaluateConfig(Strict):
    """Accuracy of every artifact on the test split, in its own runtime."""

    batch_size: int = Field(256, ge=1, description="evaluation batch size")


class BenchConfig(Strict):
    """Latency of every deployable artifact on the device."""

    batch_size: int = Field(1, ge=1, description="batch size of a timed call")
    warmup: int = Field(20, ge=0, description="untimed calls first")
    runs: int = Field(200, ge=1, description="timed calls")
    max_seconds: float = Field(30.0, gt=0, description="stop timing an artifact after this long")


class ReportConfig(Strict):
    """The human summary."""

    html: bool = Field(True, description="also write report.html")


class Recipe(Strict):
    """A pipeline recipe. Sections left out are stages left out."""

    name: str = Field(description="recipe name, used in run folder names")
    description: str = Field("", description="one line for humans")
    seed: int = Field(0, description="seed of every random choice")
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig | None = None
    student: StudentConfig | None = None
    distill: DistillConfig | None = None
    export: ExportConfig | None = None
    evaluate: EvaluateConfig | None = None
    bench: BenchConfig | None = None
    report: ReportConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.student is not None and self.distill is None:
            raise ValueError("student needs a distill section (use `losses: []` to train it without a teacher)")
        if self.distill is not None and self.student is None:
            raise ValueError("distill needs a student section")
        if self.distill is not None and self.distill.losses and self.teacher is None:
            raise ValueError("distill.losses need a teacher section (or set `losses: []`)")
        return self
