"""Config types shared by the recipe's sections (distill, prune, quantize): a training schedule with its
augmentation, and a distillation loss term."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from edgekd.config._base import Strict


class Augment(Strict):
    """Batch augmentation on tensors, seeded. When distilling, teacher and student see the same augmented, mixed view
    ("consistent teaching", Beyer et al., CVPR 2022)."""

    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels")
    hflip: bool = Field(False, description="random horizontal flip")
    mixup_alpha: float = Field(
        0.0, ge=0, description="mixup with lam ~ Beta(alpha, alpha) (Zhang et al., ICLR 2018); 0 = off"
    )
    cutmix_alpha: float = Field(
        0.0, ge=0, description="CutMix with lam ~ Beta(alpha, alpha) (Yun et al., ICCV 2019); 0 = off; with mixup "
        "also on, each batch uses one of the two (CutMix with probability 1/2)"
    )
    random_erasing: float = Field(
        0.0, ge=0, le=1, description="probability of Random Erasing per image: a rectangle of 2-40 % of the area, "
        "aspect 0.3-3.3, filled with uniform noise (Zhong et al., AAAI 2020); 0 = off"
    )


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
    augment: Augment = Field(default_factory=Augment, description="batch augmentation and mixing")
    amp: bool | None = Field(
        None, description="mixed precision: bfloat16 autocast on CPU, float16 autocast with loss scaling on CUDA; "
        "null = on where the CPU computes bf16 natively (AVX-512 BF16 or AMX), off elsewhere (the manifest records "
        "the choice)"
    )
    channels_last: bool | None = Field(
        None, description="NHWC memory format for weights and batches; null = on where the CPU computes bf16 "
        "natively, off elsewhere (1x1 strided convolutions hit by oneDNN#6035 stay NCHW)"
    )
    data_seed: int | None = Field(
        None, description="seed of batch order, augmentation and mixing (null = the recipe seed, which also seeds "
        "model init); fix it to share the teacher-output cache across an ablation over init seeds"
    )
    augment_views: int | None = Field(
        None, ge=1, description="distinct augmented epochs: epoch e replays the batch order, augmentation and mixing "
        "of epoch e mod augment_views, so the teacher-output cache runs the teacher on that many epochs only and a "
        "long distillation schedule costs about as much as plain training (null = a fresh view every epoch)"
    )
    teacher_cache: bool | None = Field(
        None, description="compute the teacher's logits of each epoch once and reuse them (null = on when every "
        "distillation loss is a logit loss; feature losses need the live teacher)"
    )


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
