"""The ensemble teacher: mean of the members' logits (by hand), a cache key that follows every member, resumable
members, and the train-teacher stage writing the ensemble as the teacher artifact on digits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from torch import nn

from edgekd.config import Recipe, TrainConfig, load_device
from edgekd.data import DataBundle, load_dataset
from edgekd.distill import chain as chain_module
from edgekd.distill.ensemble import train_ensemble
from edgekd.distill.losses import create as create_loss
from edgekd.distill.trainer import DistillTerm, Trainer, TrainResult
from edgekd.models import create, model_from_checkpoint, save_checkpoint
from edgekd.models.ensemble import Ensemble, ensemble_spec
from edgekd.stages.train_teacher import TrainTeacher
from tests.conftest import ROOT, run_cli

ONE_EPOCH = TrainConfig(epochs=1, batch_size=64, lr=0.05)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    bundle = load_dataset("digits", {}, data_dir=None, val_fraction=0.1, seed=0)
    return replace(bundle, train=bundle.train.subset(128, 0), val=bundle.val.subset(64, 0))


def linear_member(seed: int) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A flatten + linear classifier of 8x8 digits with seeded weights, and those weights as numpy arrays."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(10, 64)).astype(np.float32)
    bias = rng.normal(size=10).astype(np.float32)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        net[1].weight.copy_(torch.from_numpy(weight))
        net[1].bias.copy_(torch.from_numpy(bias))
    return net, weight, bias


def test_ensemble_logits_are_the_mean_of_the_members(digits: DataBundle) -> None:
    members = [linear_member(seed) for seed in (0, 1, 2)]
    ensemble = Ensemble([net for net, _, _ in members]).eval()
    x = digits.test.x[:5]
    flat = x.reshape(5, 64).numpy().astype(np.float64)
    by_hand = sum(flat @ w.T.astype(np.float64) + b for _, w, b in members) / 3
    np.testing.assert_allclose(ensemble(x).detach().numpy(), by_hand, rtol=1e-5, atol=1e-5)


def test_ensemble_checkpoint_rebuilds_the_same_function(digits: DataBundle, tmp_path: Path) -> None:
    spec = {"name": "plain2", "kwargs": {"num_classes": 10, "in_channels": 1}}
    torch.manual_seed(0)
    ensemble = Ensemble([create(spec["name"], **spec["kwargs"]) for _ in range(2)]).eval()
    save_checkpoint(tmp_path / "teacher.pt", ensemble, spec=ensemble_spec([spec, spec]))
    rebuilt = model_from_checkpoint(tmp_path / "teacher.pt").eval()
    x = digits.test.x[:4]
    assert torch.equal(rebuilt(x), ensemble(x))
    members = [m(x) for m in ensemble.members]
    torch.testing.assert_close(rebuilt(x), (members[0] + members[1]) / 2)


def test_cache_key_changes_with_any_member(digits: DataBundle, tmp_path: Path) -> None:
    def key(members: list[nn.Module]) -> str:
        student = create("plain2", num_classes=10, in_channels=1)
        trainer = Trainer(student, digits, ONE_EPOCH, tmp_path, teacher=Ensemble(members).eval(),
                          terms=[DistillTerm(1.0, create_loss("kd"), "logit")])
        assert trainer.cache is not None
        return trainer.cache.key

    base = key([linear_member(s)[0] for s in (0, 1, 2)])
    assert key([linear_member(s)[0] for s in (0, 1, 2)]) == base  # same members, same key
    for changed in range(3):
        members = [linear_member(s)[0] for s in (0, 1, 2)]
        with torch.no_grad():
            members[changed][1].bias[0] += 1e-3
        assert key(members) != base, f"member {changed}"
    assert key([linear_member(s)[0] for s in (0, 1)]) != base  # one member fewer


class CountingTrainer(chain_module.Trainer):
    """The real trainer, recording the seed of every member it was asked to train."""

    seeds: list[int] = []

    def fit(self) -> TrainResult:
        CountingTrainer.seeds.append(self.seed)
        return super().fit()


def test_members_train_with_successive_seeds_and_resume(digits: DataBundle, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_module, "Trainer", CountingTrainer)
    CountingTrainer.seeds = []

    def build() -> nn.Module:
        return create("plain2", num_classes=10, in_channels=1)

    ensemble, records = train_ensemble(build, digits, ONE_EPOCH, tmp_path, members=2, seed=5)
    assert CountingTrainer.seeds == [5, 6] and [r["seed"] for r in records] == [5, 6]
    assert [r["reused"] for r in records] == [False, False]
    # each member is the single training of its seed
    torch.manual_seed(6)
    alone = Trainer(build(), digits, ONE_EPOCH, tmp_path / "alone", seed=6).fit()
    for name, value in ensemble.members[1].state_dict().items():
        assert torch.equal(value, alone.state_dict[name]), name
    first, second = (next(iter(m.parameters())) for m in ensemble.members)
    assert not torch.equal(first, second)  # another seed, other weights
    # a second call loads both members instead of training them
    (tmp_path / "member-2" / "step.json").unlink()  # member 2 interrupted after its last epoch's checkpoint
    CountingTrainer.seeds = []
    again, records = train_ensemble(build, digits, ONE_EPOCH, tmp_path, members=2, seed=5)
    assert CountingTrainer.seeds == [6] and [r["reused"] for r in records] == [True, False]
    x = digits.val.x[:8]
    torch.testing.assert_close(again(x), ensemble(x))


def test_train_teacher_stage_writes_the_ensemble(tmp_path: Path) -> None:
    recipe = {
        "name": "ensemble-digits", "seed": 0, "data": {"name": "digits"},
        "teacher": {"model": {"name": "plain4"}, "ensemble": 2, "train": {"epochs": 2, "batch_size": 64}},
        "student": {"model": {"name": "plain2"}},
        "distill": {"ce_weight": 0.0, "losses": [{"name": "function_matching"}],
                    "train": {"epochs": 2, "batch_size": 64, "augment": {"mixup_alpha": 1.0, "cutmix_alpha": 1.0}}},
        "evaluate": {}, "report": {"html": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_dir = tmp_path / "run"
    result = run_cli("run", str(path), "--device", "x86-cpu", "--out", str(run_dir), "--smoke", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    teacher_stage = next(s for s in manifest["stages"] if s["name"] == "train-teacher")
    info = teacher_stage["info"]
    teacher = next(a for a in manifest["artifacts"] if a["name"] == "teacher")
    one = create("plain4", num_classes=10, in_channels=1)
    assert teacher["info"]["parameters"] == 2 * sum(p.numel() for p in one.parameters())
    rebuilt = model_from_checkpoint(run_dir / teacher["path"]).eval()
    assert isinstance(rebuilt, Ensemble) and len(rebuilt.members) == 2
    for seed in (0, 1):
        member = run_dir / "train-teacher" / "members" / f"member-{seed + 1}" / "model.pt"
        state = torch.load(member, weights_only=True)
        assert all(torch.equal(state[k], v) for k, v in rebuilt.members[seed].state_dict().items())
    assert [m["seed"] for m in info["ensemble"]] == [0, 1]
    assert info["seconds"] == pytest.approx(sum(m["seconds"] for m in info["ensemble"]), abs=0.01)
    assert teacher["metrics"]["accuracy"] == pytest.approx(info["test_accuracy"], abs=1e-6)  # the same function
    assert "ensemble of 2 members (mean of their logits)" in (run_dir / "report.md").read_text()


def _quickstart(**teacher: object) -> dict:
    data = yaml.safe_load((ROOT / "pipelines" / "quickstart.yaml").read_text())
    data["teacher"].update(teacher)
    return data


def test_recipe_rules_of_an_ensemble_teacher() -> None:
    single, double = Recipe.model_validate(_quickstart()), Recipe.model_validate(_quickstart(ensemble=2))
    stage, device = TrainTeacher(), load_device("x86-cpu")
    assert "ensemble" not in stage.config(single, device, False)  # a single teacher's stage key is unchanged
    assert stage.config(double, device, False)["ensemble"] == 2
    feature = _quickstart(ensemble=2)
    feature["distill"]["losses"] = [{"name": "at"}]
    with pytest.raises(ValidationError, match="distill.losses at need a single teacher"):
        Recipe.model_validate(feature)
    untrained = _quickstart(ensemble=2, train=None)
    untrained["teacher"]["model"]["checkpoint"] = "teacher.pt"
    with pytest.raises(ValidationError, match="teacher.ensemble trains its members"):
        Recipe.model_validate(untrained)
