"""The report's quantization table and the model card name the split behind each figure: validation and test
accuracy side by side, and the splits of the parity probe."""

from __future__ import annotations

from typing import Any

from edgekd.deploy.card import _made_by_lines
from edgekd.report.sections import quantization_section


def _artifact(name: str, precision: str, val: float, test: float, size: int, **info: Any) -> dict[str, Any]:
    return {"name": name, "format": "onnx", "precision": precision, "runtime": "onnxruntime", "bytes": size,
            "metrics": {"val_accuracy": val, "accuracy": test}, "info": {"source": "student", **info}}


def test_quantization_table_shows_validation_and_test_drops() -> None:
    manifest = {"artifacts": [
        _artifact("student-onnx-fp32", "fp32", 0.90, 0.88, 400),
        _artifact("student-onnx-int8-ort", "int8", 0.89, 0.885, 100, method="ort",
                  parity={"top1_agreement": 0.99, "probe": {"validation": 144, "train": 368}}),
    ]}
    lines = quantization_section(manifest)
    assert "validation split (what accuracy control and selection read)" in lines[0]
    assert "validation images topped up with training images" in lines[0]
    table = lines[2].splitlines()
    assert table[0] == ("| artifact | method | runtime | fp32 val | int8 val | val drop (points) | fp32 test | "
                        "int8 test | test drop (points) | size vs fp32 | top-1 agreement |")
    # drops by hand: 100 * (0.90 - 0.89) = +1.00 on validation, 100 * (0.88 - 0.885) = -0.50 on test; 100 / 400 bytes
    assert table[2] == ("| student-onnx-int8-ort | ort | onnxruntime | 0.9000 | 0.8900 | +1.00 | 0.8800 | 0.8850 | "
                        "-0.50 | 0.25 | 0.9900 |")
    assert len(table) == 3  # the fp32 artifact is the reference, not a row


def test_model_card_names_the_parity_probe_splits() -> None:
    made = {"stages": [], "built_from": [], "export": {
        "format": "onnx", "precision": "fp32", "settings": {"opset": 17},
        "parity": {"top1_agreement": 1.0, "probe": {"validation": 144, "train": 368}}}}
    assert _made_by_lines(made)[-1] == ("- export: onnx fp32, settings: opset=17; parity vs torch on 144 validation + "
                                        "368 train images: top-1 agreement 1.0000")
    made["export"]["parity"] = {"top1_agreement": 1.0, "probe": {"validation": 512, "train": 0}}
    assert _made_by_lines(made)[-1].endswith("parity vs torch on 512 validation images: top-1 agreement 1.0000")
    made["export"]["parity"] = {"top1_agreement": 0.5}  # parity figures without the probe's splits
    assert _made_by_lines(made)[-1].endswith("; parity vs torch: top-1 agreement 0.5000")
