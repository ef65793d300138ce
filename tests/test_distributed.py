"""Multi-process training: 2 CPU ranks under torchrun (gloo) against one process on the same global batches.

This file is also the worker: ``python tests/test_distributed.py OUT`` trains the reference nets (one process, or
one rank each under ``python -m torch.distributed.run --nproc_per_node=2``) and rank 0 writes the per-epoch history,
the final weights and the teacher-cache folder under OUT.

Tolerances: without BatchNorm in the student, two ranks compute the same gradient as one process up to float32
summation order, so losses, weights and cached teacher logits agree to 1e-5 (relative). With BatchNorm, gloo has no
SyncBatchNorm, so each rank normalises with the statistics of its half of the batch: the losses then agree only to a
few percent (3 epochs of ResNet-8 below: measured <= 0.4 %, asserted 5 %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
EXACT = 1e-5
PER_RANK_BN = 5e-2


class TinyNet(nn.Module):
    """A BatchNorm-free student: conv, ReLU, conv, ReLU, global pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def _worker(out: Path) -> None:
    """Train the BN-free and the BN student with KD, mixup and crops on every rank, then the BN-free one again on
    rank 0 alone inside ``solo()`` (a non-distributed stage); rank 0 writes the results under ``out``."""
    from edgekd import _distributed as dist
    from edgekd.config import TrainConfig
    from edgekd.data import DataBundle, Split
    from edgekd.distill.losses import create
    from edgekd.distill.trainer import DistillTerm, Trainer
    from edgekd.models import create as create_model

    torch.set_num_threads(1)
    dist.init_process_group()
    generator = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.rand(n, 1, 8, 8, generator=generator), torch.arange(n) % 3)  # noqa: E731
    data = DataBundle("tiny", split(39), split(20), split(6), 3, 1, (8, 8), (0.5,), (0.29,), ("a", "b", "c"), "t")
    # 39 samples in global batches of 12: 12, 12, 12, 3 -> the last one splits 2 / 1 over the ranks
    config = TrainConfig(epochs=3, batch_size=12, lr=0.05, augment={"crop_padding": 1, "mixup_alpha": 0.4},
                         teacher_cache=True)
    builders = {"plain": TinyNet, "bn": lambda: create_model("resnet8", num_classes=3, in_channels=1)}
    results = {}

    def train(name: str, build: str) -> None:
        torch.manual_seed(1)
        teacher, student = create_model("resnet8", num_classes=3, in_channels=1, width=0.5), builders[build]()
        # fp32 (the trajectories are compared to 1e-7); the BN student also runs NHWC
        cfg = config.model_copy(update={"amp": False, "channels_last": build == "bn"})
        trainer = Trainer(student, data, cfg, out / name, seed=0, teacher=teacher, ce_weight=0.5,
                          terms=[DistillTerm(0.5, create("kd", temperature=4.0), "logit")],
                          teacher_cache_dir=out / name / "cache")
        result = trainer.fit()
        results[name] = result.history
        if dist.is_main():
            torch.save(result.state_dict, out / f"{name}-weights.pt")

    train("plain", "plain")
    train("bn", "bn")
    if dist.is_main():
        with dist.solo():
            train("solo", "plain")
    dist.barrier()
    if dist.is_main():
        (out / "history.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def _train(out: Path, ranks: int) -> dict:
    command = (TORCHRUN if ranks == 2 else [sys.executable]) + [__file__, str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    return one, two, _train(one, 1), _train(two, 2)


def test_shard_cuts_like_tensor_split() -> None:
    from edgekd._distributed import World, shard

    for n in (0, 1, 3, 12, 13):
        for size in (1, 2, 3, 5):
            parts = [shard(n, World(rank, size)) for rank in range(size)]
            expected = [len(p) for p in torch.tensor_split(torch.arange(n), size)]
            assert [hi - lo for lo, hi in parts] == expected
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_torchrun_environment_and_solo(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd import _distributed as dist

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.world() == dist.World(0, 1, 0) and dist.is_main() and not dist.init_process_group()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.world() == dist.World(1, 2, 1) and not dist.is_main()
    with dist.solo():  # rank 0 working alone sees a world of one
        assert dist.world() == dist.World(0, 1, 1) and not dist.active()
    # without a process group the collectives are the single-process identities
    tensor = torch.tensor([1.0, 2.0])
    assert dist.all_reduce_sum(tensor) is tensor and tensor.tolist() == [1.0, 2.0]
    assert dist.broadcast_flag(True) is True


def test_two_ranks_follow_the_single_process_trajectory(runs: tuple[Path, Path, dict, dict]) -> None:
    one, two, single, double = runs
    for a, b in zip(single["plain"], double["plain"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=EXACT)
        assert b["train_accuracy"] == a["train_accuracy"] and b["val_accuracy"] == a["val_accuracy"]
    w1 = torch.load(one / "plain-weights.pt", weights_only=True)
    w2 = torch.load(two / "plain-weights.pt", weights_only=True)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=EXACT, atol=EXACT)


def test_rank_0_alone_in_solo_trains_like_one_process(runs: tuple[Path, Path, dict, dict]) -> None:
    """A non-distributed stage under torchrun: rank 0 trains by itself while the other rank waits."""
    _, _, single, double = runs
    for a, b in zip(single["solo"], double["solo"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=EXACT) and b["val_accuracy"] == a["val_accuracy"]


def test_per_rank_batchnorm_stays_within_its_tolerance(runs: tuple[Path, Path, dict, dict]) -> None:
    _, _, single, double = runs
    for a, b in zip(single["bn"], double["bn"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=PER_RANK_BN)


def test_ranks_assemble_the_same_teacher_cache(runs: tuple[Path, Path, dict, dict]) -> None:
    """Each rank runs the teacher on its slice; the file rank 0 writes holds every row, as one process's does."""
    one, two, _, _ = runs
    files_one = sorted((one / "plain" / "cache").rglob("view-*.npy"))
    files_two = sorted((two / "plain" / "cache").rglob("view-*.npy"))
    assert [f.relative_to(one) for f in files_one] == [f.relative_to(two) for f in files_two]  # same keys
    assert len(files_one) == 3
    for a, b in zip(files_one, files_two):
        logits_one = torch.from_numpy(np.load(a))
        logits_two = torch.from_numpy(np.load(b))
        assert logits_one.shape == (39, 3) and logits_one.abs().sum(1).min() > 0  # no row left unfilled
        torch.testing.assert_close(logits_two, logits_one, rtol=EXACT, atol=EXACT)


@pytest.mark.slow
def test_quickstart_smoke_under_torchrun(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [*TORCHRUN, "-m", "edgekd.cli", "run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device",
               "x86-cpu", "--out", str(run_dir), "--smoke"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["provenance"]["processes"] == 2
    assert {s["status"] for s in manifest["stages"]} <= {"done", "skipped"}
    assert {"teacher", "student", "student-onnx-fp32"} <= {a["name"] for a in manifest["artifacts"]}

    from tests.conftest import sha256sum_check  # here: this file also runs as a worker script, outside the package

    checked = sha256sum_check(run_dir, manifest, tmp_path / "SHA256SUMS")  # every file, an IR's .xml and .bin
    assert checked.returncode == 0, checked.stdout + checked.stderr
    teacher = next(s for s in manifest["stages"] if s["name"] == "train-teacher")
    assert teacher["info"]["history"][0]["epoch"] == 1
    # rank 0 alone logs and writes: each stage's line appears once
    assert (run_dir / "logs" / "run.log").read_text().count("teacher resnet20 ") == 1


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
