"""The `quantize` section of a recipe: INT8 post-training quantization and quantization-aware training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgekd.config._base import Strict
from edgekd.config.training import LossTerm, TrainConfig


class OrtQuantize(Strict):
    """ONNX Runtime static quantization (QDQ: QInt8 weights, QUInt8 activations; QInt8 symmetric for TensorRT),
    after `quant_pre_process`."""

    per_channel: bool = Field(True, description="one weight scale per output channel (false: per tensor)")
    calibrate_method: Literal["minmax", "entropy", "percentile"] = Field("minmax", description="activation ranges")


class NncfQuantize(Strict):
    """NNCF post-training quantization (on ONNX and OpenVINO models)."""

    preset: Literal["performance", "mixed"] = Field("performance", description="symmetric or mixed quantizers")
    fast_bias_correction: bool = Field(True, description="fast bias correction (false: the slower exact one)")
    subset_size: int = Field(300, ge=1, description="calibration samples NNCF uses")


class MixedPrecisionConfig(Strict):
    """Mixed-precision INT8 (engines `ort-mixed`, `nncf-mixed`, `aiq-mixed`, `trt-mixed`): the nodes whose INT8
    costs the most validation accuracy stay in float, ranked by the accuracy regained when each alone is left in
    float in ONNX Runtime's INT8 model (`aiq-mixed` and `trt-mixed` keep the nodes `ort-mixed` chooses)."""

    max_drop: float = Field(
        0.01, ge=0, lt=1,
        description="largest top-1 drop against the fp32 model on the ranking subset (0.01 = one point); the "
                    "fewest float nodes meeting it are kept")
    float_nodes: int | None = Field(
        None, ge=0,
        description="keep exactly this many of the most sensitive nodes in float (max_drop is then not used); "
                    "null: the fewest within max_drop")
    ranking_samples: int = Field(
        5000, ge=1,
        description="validation images that rank the nodes and judge the drop (the whole split when it is smaller; "
                    "the manifest records the count). The drop compares fp32 and INT8 on the same images, so its "
                    "standard error is about sqrt(f/n), f the share of images whose prediction INT8 flips: with f up "
                    "to 0.03, 5000 images give 0.25 points, a quarter of a 1-point max_drop")
    sqnr_samples: int = Field(64, ge=1, description="calibration images each node's output SQNR is measured on")
    max_excluded: int | None = Field(
        None, ge=0, description="most nodes kept in float; null: any number, up to every quantized node")

    @model_validator(mode="after")
    def _fixed_count_within_cap(self) -> MixedPrecisionConfig:
        if self.float_nodes is not None and self.max_excluded is not None and self.float_nodes > self.max_excluded:
            raise ValueError(f"float_nodes {self.float_nodes} is above max_excluded {self.max_excluded}")
        return self


class AccuracyControl(Strict):
    """NNCF accuracy-controlled PTQ on OpenVINO: revert quantizers until the validation drop is at most `max_drop`."""

    max_drop: float | None = Field(
        0.01, gt=0, lt=1,
        description="largest top-1 drop on validation (0.01 = one point); null: stay above the device's min_accuracy")


class QatTrain(TrainConfig):
    """Fine-tuning of a quantized model: a few epochs at a small learning rate."""

    epochs: int = Field(2, ge=1, description="number of epochs")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")


class QatConfig(Strict):
    """Quantization-aware training with distillation: NNCF fake-quantizers on the student, fine-tuned with KD."""

    teacher: Literal["student", "teacher"] = Field(
        "student", description="distil from the fp32 student itself or from the original teacher")
    ce_weight: float = Field(0.5, ge=0, description="weight of cross-entropy")
    losses: list[LossTerm] = Field(
        default_factory=lambda: [LossTerm(name="kd", weight=0.5, params={"temperature": 4.0})],
        description="distillation terms (logit losses)")
    train: QatTrain = Field(default_factory=QatTrain, description="fine-tuning schedule")


class QuantizeConfig(Strict):
    """INT8 artifacts for every runtime of the device that lists `int8`."""

    calibration_samples: int = Field(300, ge=1, description="train images used for calibration")
    engines: list[Literal["ort", "nncf", "ort-mixed", "nncf-mixed", "aiq-mixed", "trt-mixed"]] = Field(
        ["ort", "nncf"], min_length=1,
        description="PTQ engines for ONNX Runtime targets (ort-mixed: ort with the most sensitive nodes in float); "
                    "nncf-mixed: NNCF PTQ of the OpenVINO IR with the most sensitive nodes in float (OpenVINO "
                    "targets); aiq-mixed, trt-mixed: LiteRT's full-integer model and TensorRT's INT8 engine with "
                    "ort-mixed's float nodes in float")
    ort: OrtQuantize = Field(default_factory=OrtQuantize)
    nncf: NncfQuantize = Field(default_factory=NncfQuantize)
    mixed: MixedPrecisionConfig = Field(default_factory=MixedPrecisionConfig,
                                        description="the mixed-precision engines: how float nodes are chosen")
    accuracy_control: AccuracyControl | None = Field(None, description="also build an accuracy-controlled IR")
    qat: QatConfig | None = Field(None, description="also build QAT+KD artifacts")
    parity_samples: int = Field(512, ge=1, description="images for top-1 agreement with torch: validation images (a "
                                "seeded subset), topped up with seeded train images; never test images")
