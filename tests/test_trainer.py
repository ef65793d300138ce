"""The trainer: loss extras, teacher-output cache, consistent teaching with mixup/CutMix, AMP, channels-last, resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.config import TrainConfig
from edgekd.data import DataBundle, Split
from edgekd.distill._extras import classifier_head
from edgekd.distill.losses import create
from edgekd.distill.mixing import MixedBatch, mix_batch, mixed_cross_entropy
from edgekd.distill.trainer import DistillTerm, Trainer, last_epoch_record
from edgekd.errors import UserError
from edgekd.models import create as create_model

MEAN, STD = (0.5,), (0.29,)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny nets run fastest on one thread (two threads on a busy 2-core machine spin-wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> DataBundle:
    generator = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        return Split(torch.rand(n, 1, 8, 8, generator=generator), torch.arange(n) % 3)

    return DataBundle("tiny", split(32), split(12), split(6), 3, 1, (8, 8), MEAN, STD, ("a", "b", "c"), "test")


def nets(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A tiny ResNet-8 teacher (width 0.5) and student (width 0.25), initialised from ``seed``."""
    torch.manual_seed(seed)
    teacher = create_model("resnet8", num_classes=3, in_channels=1, width=0.5).eval()
    student = create_model("resnet8", num_classes=3, in_channels=1, width=0.25)
    return teacher, student


def kd_term() -> DistillTerm:
    return DistillTerm(0.9, create("kd", temperature=4.0), "logit")


def config(**fields: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "lr": 0.05, **fields})


def record_inputs(module: nn.Module, store: list[torch.Tensor]) -> None:
    module.register_forward_pre_hook(lambda _m, args: store.append(args[0].detach().clone()))


# -- loss extras ---------------------------------------------------------------------------------------------------
def test_classifier_head_is_found_generically() -> None:
    resnet = create_model("resnet8", num_classes=3, in_channels=1)
    assert classifier_head(resnet) is resnet.fc
    mobilenet = create_model("mobilenetv2", num_classes=3, in_channels=1, width_mult=0.25)
    assert classifier_head(mobilenet) is mobilenet.classifier[1]
    custom = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    assert classifier_head(custom) is custom[3]
    with pytest.raises(UserError, match="no nn.Linear classifier"):
        classifier_head(nn.Sequential(nn.Conv2d(1, 3, 1)))


def test_catkd_and_nd_receive_their_extras_and_train(data: DataBundle, tmp_path: Path) -> None:
    teacher, student = nets()
    catkd, nd = create("catkd"), create("nd")
    calls: dict[str, list[dict[str, Any]]] = {"catkd": [], "nd": []}
    for name, loss in (("catkd", catkd), ("nd", nd)):
        loss.register_forward_pre_hook(lambda _m, _a, kwargs, n=name: calls[n].append(kwargs), with_kwargs=True)
    terms = [DistillTerm(1.0, catkd, "feature", ["layer3"], ["layer3"]),
             DistillTerm(1.0, nd, "feature", ["layer3"], ["layer3"])]
    fc_before = student.fc.weight.detach().clone()
    trainer = Trainer(student, data, config(), tmp_path, teacher=teacher, terms=terms)
    history = trainer.fit().history  # 32 samples, batches of 16: 2 steps

    training_calls = calls["catkd"][1:]  # the first call is the probe that builds lazy parts
    assert len(training_calls) == 2
    assert all(c["student_head"] is student.fc and c["teacher_head"] is teacher.fc for c in training_calls)
    # nd gets each batch's labels (every training sample once per epoch) and the teacher's class means
    targets = torch.cat([c["target"] for c in calls["nd"][1:]])
    assert sorted(targets.tolist()) == sorted(data.train.y.tolist())
    pooled: list[torch.Tensor] = []
    handle = teacher.layer3.register_forward_hook(lambda _m, _a, out: pooled.append(out.mean(dim=(2, 3))))
    with torch.no_grad():
        teacher((data.train.x - MEAN[0]) / STD[0])
    handle.remove()
    expected = torch.stack([pooled[0][data.train.y == k].mean(0) for k in range(3)])
    torch.testing.assert_close(calls["nd"][1]["teacher_class_means"][0], expected, rtol=1e-5, atol=1e-6)
    # both terms trained the student's classifier and ND's projector (student width 16 -> teacher width 32)
    assert torch.isfinite(torch.tensor(history[0]["loss"]))
    assert not torch.equal(student.fc.weight.detach(), fc_before)
    assert any(p.shape == (32, 16) for p in nd.parameters())


# -- teacher-output cache ------------------------------------------------------------------------------------------
def test_cached_teacher_logits_train_exactly_like_the_live_teacher(data: DataBundle, tmp_path: Path) -> None:
    """Under function matching's views (crop, flip, erasing, mixup or CutMix per batch), the cache's rows are the
    live teacher's logits of the view the student trains on, also when that view is drawn again afterwards."""
    cfg = config(epochs=2, augment={"crop_padding": 1, "hflip": True, "random_erasing": 0.5, "mixup_alpha": 0.4,
                                    "cutmix_alpha": 1.0})
    trainers: dict[str, Trainer] = {}

    def train(cache: bool, name: str, teacher_outputs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        teacher, student = nets()
        teacher.register_forward_hook(lambda _m, _a, out: teacher_outputs.append(out.detach().clone()))
        trainers[name] = Trainer(student, data, cfg.model_copy(update={"teacher_cache": cache}), tmp_path / name,
                                 teacher=teacher, terms=[kd_term()], teacher_cache_dir=tmp_path / "cache")
        trainers[name].fit()
        return student.state_dict()

    live: list[torch.Tensor] = []
    cold: list[torch.Tensor] = []
    warm: list[torch.Tensor] = []
    states = [train(False, "live", live), train(True, "cold", cold), train(True, "warm", warm)]
    assert len(live) == 4 and len(cold) == 4 and not warm  # 2 epochs x 2 steps; the warm run never ran the teacher
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]) and torch.equal(states[0][key], states[2][key])
    files = sorted((tmp_path / "cache").glob("*/view-*.npy"))
    assert [f.name for f in files] == ["view-0.npy", "view-1.npy"]
    for epoch, file in enumerate(files):  # row k: the teacher's logits of the k-th sample the student saw
        stored = torch.from_numpy(np.load(file))
        torch.testing.assert_close(stored, torch.cat(live[2 * epoch : 2 * epoch + 2]).float())
    # the view drawn again (a later epoch replaying it) through a fresh teacher: the cache holds its logits
    trainer, fresh_teacher = trainers["warm"], nets()[0].to(trainers["warm"].device).eval()
    assert trainer.cache is not None
    for view in range(2):
        batches = list(trainer.view_batches(view))
        assert any(b.lam < 1.0 for b in batches)  # mixed views
        with torch.no_grad(), trainer.precision.autocast():
            redrawn = torch.cat([fresh_teacher(trainer.normalize(b.x.to(trainer.device)).contiguous(
                memory_format=trainer.memory_format)).float().cpu() for b in batches])
        cached = trainer.cache.load(view)
        assert cached is not None
        torch.testing.assert_close(cached, redrawn)


def test_cache_key_follows_the_data_seed_not_the_init_seed(data: DataBundle, tmp_path: Path) -> None:
    teacher, _ = nets()

    def key(seed: int = 0, teacher_net: nn.Module = teacher, **fields: Any) -> str:
        trainer = Trainer(nets()[1], data, config(**fields), tmp_path, seed=seed, teacher=teacher_net,
                          terms=[kd_term()])
        assert trainer.cache is not None  # on by default with logit-only losses
        return trainer.cache.key

    base = key(seed=1, data_seed=5)
    assert key(seed=2, data_seed=5) == base  # an ablation over init seeds shares the cache
    assert key(seed=5) == base  # data_seed defaults to the seed
    assert key(seed=1, data_seed=6) != base
    assert key(seed=1, data_seed=5, batch_size=8) != base
    assert key(seed=1, data_seed=5, augment={"hflip": True}) != base
    other_teacher = nets(seed=3)[0]
    assert key(seed=1, data_seed=5, teacher_net=other_teacher) != base


def test_feature_losses_keep_the_live_teacher(data: DataBundle, tmp_path: Path) -> None:
    teacher, student = nets()
    at = [DistillTerm(1.0, create("at"), "feature", ["layer3"], ["layer3"])]
    assert Trainer(student, data, config(), tmp_path, teacher=teacher, terms=at).cache is None
    with pytest.raises(UserError, match="teacher_cache"):
        Trainer(student, data, config(teacher_cache=True), tmp_path, teacher=teacher, terms=at)


# -- consistent teaching: mixup / CutMix ---------------------------------------------------------------------------
def test_mixup_is_a_convex_combination_with_the_reversed_batch() -> None:
    x, y = torch.rand(6, 1, 4, 4), torch.arange(6)
    mixed = mix_batch(x, y, generator=torch.Generator().manual_seed(3), mixup_alpha=0.4)
    assert 0 < mixed.lam < 1
    torch.testing.assert_close(mixed.x, mixed.lam * x + (1 - mixed.lam) * x.flip(0))
    assert torch.equal(mixed.y_b, y.flip(0))
    again = mix_batch(x, y, generator=torch.Generator().manual_seed(3), mixup_alpha=0.4)
    assert torch.equal(again.x, mixed.x)


def test_cutmix_lambda_is_the_share_of_kept_pixels() -> None:
    x = torch.arange(4 * 16 * 16, dtype=torch.float32).reshape(4, 1, 16, 16)  # partners differ at every pixel
    y = torch.arange(4)
    for seed in range(20):
        mixed = mix_batch(x, y, generator=torch.Generator().manual_seed(seed), cutmix_alpha=1.0)
        pasted = mixed.x != x
        assert torch.equal(mixed.x[pasted], x.flip(0)[pasted])
        assert mixed.lam == pytest.approx(1 - pasted[0].float().mean().item())
        rows, cols = pasted[0, 0].any(1).nonzero(), pasted[0, 0].any(0).nonzero()
        if len(rows):  # the pasted region is one rectangle
            assert int(pasted[0, 0].sum()) == len(rows) * len(cols)


def test_mixing_off_draws_nothing_and_both_on_uses_each() -> None:
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
    plain = mix_batch(x, y, generator=generator)
    assert plain.x is x and plain.lam == 1.0 and torch.equal(generator.get_state(), state)
    kinds = set()
    for seed in range(30):
        mixed = mix_batch(x, y, generator=torch.Generator().manual_seed(seed), mixup_alpha=0.4, cutmix_alpha=1.0)
        kinds.add("cutmix" if bool(((mixed.x == x) | (mixed.x == x.flip(0))).all()) else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_mixed_cross_entropy_weights_both_labels() -> None:
    logits, y_a, y_b = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 1, 0, 0])
    batch = MixedBatch(torch.zeros(5, 1, 1, 1), y_a, y_b, 0.3)
    expected = 0.3 * F.cross_entropy(logits, y_a) + 0.7 * F.cross_entropy(logits, y_b)
    torch.testing.assert_close(mixed_cross_entropy(nn.CrossEntropyLoss(), logits, batch), expected)
    assert torch.equal(batch.target, y_b)  # the label of the larger share


def test_teacher_and_student_see_the_same_mixed_view(data: DataBundle, tmp_path: Path) -> None:
    teacher, student = nets()
    seen_by_student: list[torch.Tensor] = []
    seen_by_teacher: list[torch.Tensor] = []
    record_inputs(student, seen_by_student)
    record_inputs(teacher, seen_by_teacher)
    cfg = config(augment={"crop_padding": 2, "hflip": True, "mixup_alpha": 0.4, "cutmix_alpha": 1.0},
                 teacher_cache=False)
    Trainer(student, data, cfg, tmp_path, teacher=teacher, terms=[kd_term()]).fit()
    train_inputs = seen_by_student[:2]  # then come the validation batches
    assert len(seen_by_teacher) == 2
    for s, t in zip(train_inputs, seen_by_teacher):
        assert torch.equal(s, t)
    raw = (data.train.x - MEAN[0]) / STD[0]
    assert not any(torch.equal(s, raw[: len(s)]) for s in train_inputs)  # augmented and mixed, not the raw batch


# -- numerics, determinism, resume ---------------------------------------------------------------------------------
def test_amp_runs_in_bfloat16_with_float32_weights_and_channels_last(data: DataBundle, tmp_path: Path) -> None:
    teacher, _ = nets()
    student = create_model("resnet8", num_classes=3, in_channels=1)  # >= 16 channels everywhere: see the next test
    dtypes: list[torch.dtype] = []
    inputs: list[torch.Tensor] = []
    student.conv1.register_forward_hook(lambda _m, _a, out: dtypes.append(out.dtype))
    record_inputs(student, inputs)
    result = Trainer(student, data, config(amp=True, channels_last=True), tmp_path, teacher=teacher,
                     terms=[kd_term()]).fit()
    assert dtypes[0] == torch.bfloat16 and torch.isfinite(torch.tensor(result.history[0]["loss"]))
    assert inputs[0].is_contiguous(memory_format=torch.channels_last)
    assert student.conv1.weight.dtype == torch.float32
    assert student.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_keeps_narrow_strided_1x1_convolutions_nchw(data: DataBundle, tmp_path: Path) -> None:
    """oneDNN#6035: the NHWC weight gradient of a 1x1 stride-2 conv with fewer input channels than the CPU's channel
    block (8 or 16) writes out of bounds; the quarter-width ResNet-8 has one or two (layer2's 4 -> 8 shortcut, and
    with AVX-512 layer3's 8 -> 16). Those layers alone run NCHW, and the training equals an all-NCHW one up to float
    rounding."""
    _, student = nets()
    _, reference = nets()
    shortcut = student.layer2[0].downsample[0]
    inputs: list[torch.Tensor] = []
    output_strides: list[tuple[int, ...]] = []
    trainer = Trainer(student, data, config(epochs=2, amp=False, channels_last=True), tmp_path / "cl")
    record_inputs(shortcut, inputs)  # runs after the trainer's own pre-hook
    shortcut.register_forward_hook(lambda _m, _a, out: output_strides.append(out.stride()))
    cl = trainer.fit()
    plain = Trainer(reference, data, config(epochs=2, amp=False, channels_last=False), tmp_path / "nchw").fit()
    wide_block = "AVX512" in torch.backends.cpu.get_cpu_capability()  # channel block 16, else 8
    expected = ["layer2.0.downsample.0"] + (["layer3.0.downsample.0"] if wide_block else [])  # 4 and 8 channels in
    assert cl.numerics is not None and cl.numerics["contiguous_layers"] == expected
    assert inputs and all(x.is_contiguous() for x in inputs)
    # A 1x1 weight is is_contiguous() in both layouts; only row-major strides make PyTorch pick the NCHW kernel.
    assert shortcut.weight.stride() == (4, 1, 1, 1)
    assert student.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert set(output_strides) == {(8 * 4 * 4, 4 * 4, 4, 1)}  # (batch, 8, 4, 4) computed NCHW
    assert len(shortcut._forward_pre_hooks) == 1  # the trainer's removed after training, the recorder kept
    for name, value in cl.state_dict.items():
        assert torch.allclose(value.float(), plain.state_dict[name].float(), atol=1e-4), name


@pytest.mark.parametrize("native", [True, False])
def test_amp_and_channels_last_are_chosen_from_the_cpu(native: bool, data: DataBundle, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd.distill._precision as precision

    monkeypatch.setattr(precision, "torch_bf16_supported", lambda: native)
    _, student = nets()
    numerics = Trainer(student, data, config(), tmp_path).fit().numerics
    assert numerics is not None
    assert numerics["precision"] == ("bf16-autocast" if native else "fp32")
    assert numerics["channels_last"] is native
    assert numerics["reason"].startswith("amp and channels_last automatic: this CPU")
    explicit = Trainer(nets()[1], data, config(amp=False, channels_last=False), tmp_path / "x").fit().numerics
    assert explicit is not None and explicit["precision"] == "fp32" and explicit["reason"] == "set by the recipe"


def test_augment_views_replay_epochs_and_run_the_teacher_on_those_only(data: DataBundle, tmp_path: Path) -> None:
    teacher, student = nets()
    calls: list[int] = []
    teacher.register_forward_pre_hook(lambda _m, args: calls.append(len(args[0])))
    seen: list[torch.Tensor] = []
    record_inputs(student, seen)
    cfg = config(epochs=4, augment={"crop_padding": 1, "cutmix_alpha": 1.0}, augment_views=2, teacher_cache=True)
    Trainer(student, data, cfg, tmp_path, teacher=teacher, terms=[kd_term()]).fit()
    batch = cfg.batch_size  # training batches are full (32 = 2 x 16); the probe has 2 images, validation 12
    assert sum(n for n in calls if n == batch) == 2 * len(data.train)  # the teacher saw views 0 and 1 only
    train = [x for x in seen if len(x) == batch]
    epochs = [train[2 * e : 2 * e + 2] for e in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[2]))  # epoch 2 replays view 0
    assert not all(torch.equal(a, b) for a, b in zip(epochs[0], epochs[1]))
    assert len(list((tmp_path / "teacher-logits").rglob("view-*.npy"))) == 2


def test_resume_after_an_interruption_equals_one_uninterrupted_run(data: DataBundle, tmp_path: Path) -> None:
    cfg = config(epochs=3, augment={"crop_padding": 1, "cutmix_alpha": 1.0}, warmup_epochs=1)
    teacher, student = nets()
    full = Trainer(student, data, cfg, tmp_path / "straight", teacher=teacher, terms=[kd_term()]).fit()

    teacher, student = nets()
    steps = []

    def interrupt(module: nn.Module, _args: Any) -> None:
        steps.append(module.training)
        if sum(steps) == 5:  # first training step of epoch 3 (2 steps per epoch)
            raise KeyboardInterrupt

    handle = student.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        Trainer(student, data, cfg, tmp_path / "resumed", teacher=teacher, terms=[kd_term()]).fit()
    handle.remove()
    teacher, student = nets()[0], nets(seed=7)[1]  # a new process: other initial weights, replaced on resume
    resumed = Trainer(student, data, cfg, tmp_path / "resumed", teacher=teacher, terms=[kd_term()]).fit()
    strip = lambda history: [{k: v for k, v in h.items() if k != "seconds"} for h in history]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    for key, value in full.state_dict.items():
        assert torch.equal(resumed.state_dict[key], value)


def test_history_has_one_record_per_epoch(data: DataBundle, tmp_path: Path) -> None:
    _, student = nets()
    result = Trainer(student, data, config(epochs=2, schedule="constant"), tmp_path).fit()
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2]
    assert last_epoch_record(history) == {"last_epoch": 2, "last_val_accuracy": history[1]["val_accuracy"]}
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in history)  # the kept weights' epoch
    for record in history:
        assert set(record) == {"epoch", "loss", "train_accuracy", "lr", "seconds", "val_accuracy"}
        assert record["lr"] == 0.05 and 0 <= record["train_accuracy"] <= 1
        assert record["val_accuracy"] in {k / 12 for k in range(13)}


def test_last_epoch_record_is_the_final_entry_not_the_best() -> None:
    history = [{"val_accuracy": 0.5}, {"val_accuracy": 0.75}, {"val_accuracy": 0.625}]
    assert last_epoch_record(history) == {"last_epoch": 3, "last_val_accuracy": 0.625}
    assert last_epoch_record([]) == {"last_epoch": 0, "last_val_accuracy": None}
