"""Function matching (Beyer et al., CVPR 2022): the trainer's objective on a mixup batch, checked by hand in numpy,
and the recipe rules that keep it function matching (no label term, mixed views)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from edgekd.config import TrainConfig, load_recipe
from edgekd.data import DataBundle, Split
from edgekd.distill.losses import create
from edgekd.distill.mixing import MixedBatch, mixup
from edgekd.distill.trainer import DistillTerm, Trainer
from edgekd.errors import UserError
from tests.conftest import ROOT

MEAN, STD = 0.5, 0.25
# two 1x2x2 images and their labels
IMAGES = np.array([[[[0.0, 0.2], [0.9, 1.0]]], [[[0.6, 0.1], [0.3, 0.8]]]], dtype=np.float32)
LABELS = np.array([0, 2])
TEACHER_W = np.array([[1.0, -0.5, 0.25, 0.0], [0.0, 0.75, -1.0, 0.5], [-0.25, 0.0, 0.5, 1.5]], dtype=np.float32)
TEACHER_B = np.array([0.1, -0.2, 0.0], dtype=np.float32)
STUDENT_W = np.array([[0.5, 0.0, -0.25, 0.25], [-0.5, 0.5, 0.0, 0.0], [0.0, -0.25, 1.0, -0.5]], dtype=np.float32)
STUDENT_B = np.array([0.0, 0.3, -0.1], dtype=np.float32)


def linear(weight: np.ndarray, bias: np.ndarray) -> nn.Module:
    """A flatten + linear classifier of 1x2x2 images with the given weights."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.from_numpy(weight))
        net[1].bias.copy_(torch.from_numpy(bias))
    return net


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hand_function_matching(lam: float, temperature: float) -> float:
    """The loss by hand: mix each image with the other one, normalise, score with both linear nets, KL at T."""
    mixed = np.stack([lam * IMAGES[0] + (1 - lam) * IMAGES[1], lam * IMAGES[1] + (1 - lam) * IMAGES[0]])
    z = ((mixed - MEAN) / STD).reshape(2, 4).astype(np.float64)
    p_teacher = softmax((z @ TEACHER_W.T + TEACHER_B) / temperature)
    p_student = softmax((z @ STUDENT_W.T + STUDENT_B) / temperature)
    return float(np.mean(np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1)))


def tiny_data() -> DataBundle:
    split = Split(torch.from_numpy(IMAGES), torch.from_numpy(LABELS))
    return DataBundle("two", split, split, split, 3, 1, (2, 2), (MEAN,), (STD,), ("a", "b", "c"), "test")


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_function_matching_on_a_hand_computed_mixup_batch(temperature: float, tmp_path: Path) -> None:
    lam = 0.3
    student, teacher = linear(STUDENT_W, STUDENT_B), linear(TEACHER_W, TEACHER_B)
    term = DistillTerm(1.0, create("function_matching", temperature=temperature), "logit")
    trainer = Trainer(student, tiny_data(), TrainConfig(epochs=1, batch_size=2), tmp_path, teacher=teacher,
                      terms=[term], ce_weight=0.0)
    # the trainer's view: mix the raw batch, then normalise (what Trainer._epoch feeds the objective)
    raw = mixup(torch.from_numpy(IMAGES), torch.from_numpy(LABELS), lam)
    batch = MixedBatch(trainer.normalize(raw.x.to(trainer.device)), raw.y_a, raw.y_b, raw.lam)
    loss, _, teacher_logits = trainer.objective(trainer.net, batch)
    expected = hand_function_matching(lam, temperature)
    assert expected > 1e-3  # the two nets disagree: the check is not trivially zero
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert teacher_logits is not None
    # the labels play no part: other labels give the same loss
    relabelled = MixedBatch(batch.x, batch.y_a.flip(0), batch.y_b.flip(0), batch.lam)
    assert trainer.objective(trainer.net, relabelled)[0].item() == pytest.approx(expected, rel=1e-5)


def test_function_matching_is_not_rescaled_by_t_squared() -> None:
    student, teacher = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.5]])
    fm = create("function_matching", temperature=3.0)(student, teacher, torch.tensor([0]))
    kd = create("kd", temperature=3.0)(student, teacher, torch.tensor([0]))
    assert fm.item() == pytest.approx(kd.item() / 9.0, rel=1e-6)


def _recipe(tmp_path: Path, ce_weight: float, augment: dict[str, float]) -> Path:
    data = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    data["distill"]["ce_weight"] = ce_weight
    data["distill"]["losses"] = [{"name": "function_matching", "weight": 1.0}]
    data["distill"]["train"]["augment"] = augment
    path = tmp_path / "fm.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_recipe_with_function_matching_needs_no_label_term_and_mixed_views(tmp_path: Path) -> None:
    mixed = {"mixup_alpha": 1.0, "cutmix_alpha": 1.0}
    recipe = load_recipe(_recipe(tmp_path, 0.0, mixed))
    assert recipe.distill is not None and recipe.distill.losses[0].name == "function_matching"
    with pytest.raises(UserError, match="no label term: set distill.ce_weight: 0"):
        load_recipe(_recipe(tmp_path, 0.1, mixed))
    with pytest.raises(UserError, match=r"set distill\.train\.augment\.mixup_alpha or cutmix_alpha"):
        load_recipe(_recipe(tmp_path, 0.0, {"crop_padding": 2}))
