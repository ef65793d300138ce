"""The distillation loss zoo against hand computations of each paper's formula (math/numpy loops, not our code)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.losses import EXTRAS, LOSSES, ClassMeans, DistillLoss, create, loss_info
from edgekd.errors import UserError

N, C = 6, 5  # batch and classes of the generic inputs
S_CH, T_CH = 4, 6  # student / teacher channels of the generic feature maps
WARMUP_LOSSES = [name for name in LOSSES.names() if "warmup_epochs" in LOSSES.entry(name).meta["defaults"]]


def _softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def _block_mean(x: np.ndarray, out: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, out, h // out, out, w // out).mean(axis=(3, 5))


def _generic_inputs(name: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Student input, teacher input and extras for any registered loss (tiny tensors)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.arange(N) % C
    if LOSSES.entry(name).meta["kind"] == "logit":
        return torch.randn(N, C, generator=g) * 2, torch.randn(N, C, generator=g) * 2, {"target": target}
    student, teacher = torch.randn(N, S_CH, 4, 4, generator=g), torch.randn(N, T_CH, 4, 4, generator=g)
    extras = {
        "target": target,
        "teacher_class_means": [torch.randn(C, T_CH, generator=g)],
        "student_head": nn.Linear(S_CH, C),
        "teacher_head": nn.Linear(T_CH, C),
    }
    return student, teacher, extras


def _evaluate(loss: DistillLoss, student: torch.Tensor, teacher: torch.Tensor, extras: dict) -> torch.Tensor:
    if loss.kind == "logit":
        return loss(student, teacher, extras["target"])
    return loss([student], [teacher], **{key: extras[key] for key in loss.needs})


# -- registry, hparams, errors -----------------------------------------------------------------------------------


def test_registry_has_the_required_losses() -> None:
    assert {"kd", "dkd", "fitnets", "at", "rkd"} <= set(LOSSES.names())
    assert len({"luminet", "sinkd", "topkd", "dual_head"} & set(LOSSES.names())) >= 2
    assert len({"catkd", "vkd", "nd"} & set(LOSSES.names())) >= 2
    assert {"dkd", "luminet"} <= set(WARMUP_LOSSES)
    assert all(hasattr(create(name), "set_epoch") for name in WARMUP_LOSSES)


@pytest.mark.parametrize("name", LOSSES.names())
def test_metadata_and_docstring(name: str) -> None:
    entry = LOSSES.entry(name)
    assert entry.meta["kind"] in {"logit", "feature"}
    assert re.search(r"(19|20)\d\d", entry.meta["paper"]), "paper citation needs a year"
    assert entry.meta["description"]
    info = loss_info(name)
    assert entry.meta["defaults"] == {h["name"]: h["default"] for h in info["hparams"]}
    assert all(h["description"] for h in info["hparams"])
    assert set(info["needs"]) <= set(EXTRAS)
    doc = entry.obj.__doc__ or ""
    assert "Recipe::" in doc and f"name: {name}" in doc and "Formula" in doc
    loss = create(name)
    assert isinstance(loss, nn.Module) and loss.kind == entry.meta["kind"]


def test_unknown_loss_name_suggests_close_names() -> None:
    with pytest.raises(UserError, match="unknown loss 'dkdd'; did you mean 'dkd'"):
        create("dkdd")


@pytest.mark.parametrize("name", LOSSES.names())
def test_unknown_hparam_names_the_loss_and_its_hparams(name: str) -> None:
    with pytest.raises(UserError) as info:
        create(name, bogus_hparam=1)
    message = str(info.value)
    assert "\n" not in message and f"loss {name!r}" in message and "'bogus_hparam'" in message
    for hparam in LOSSES.entry(name).meta["defaults"]:
        assert hparam in message


def test_misspelt_and_invalid_hparams() -> None:
    with pytest.raises(UserError, match="unknown hparam 'temprature'; did you mean 'temperature'"):
        create("dkd", temprature=4)
    with pytest.raises(UserError, match="hparam 'temperature'.*greater than 0"):
        create("kd", temperature=0)
    with pytest.raises(UserError, match="hparam 'warmup_epochs'"):
        create("dkd", warmup_epochs="ten")


# -- behaviour shared by every loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSSES.names())
def test_gradient_reaches_the_student_never_the_teacher(name: str) -> None:
    student, teacher, extras = _generic_inputs(name)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss = create(name)
    value = _evaluate(loss, student, teacher, extras)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    if "teacher_head" in loss.needs:
        assert extras["teacher_head"].weight.grad is None
        assert extras["student_head"].weight.grad is not None


@pytest.mark.parametrize("name", ["kd", "dkd", "luminet", "at", "rkd", "catkd"])
def test_identical_student_and_teacher_give_zero(name: str) -> None:
    student, _, extras = _generic_inputs(name)
    if name == "catkd":  # same maps through the same classifier
        student = torch.randn(N, T_CH, 4, 4)
        extras["student_head"] = extras["teacher_head"]
    value = _evaluate(create(name), student, student.clone(), extras)
    assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_sinkd_is_smallest_not_zero_for_identical_inputs() -> None:
    # Entropic transport spreads mass off the diagonal, so SinKD(t, t) > 0; it is still the minimum.
    loss, teacher, target = create("sinkd"), torch.randn(N, C) * 2, torch.zeros(N, dtype=torch.long)
    at_teacher = loss(teacher.clone(), teacher, target).item()
    assert at_teacher > 0
    for seed in range(5):
        noise = torch.randn(N, C, generator=torch.Generator().manual_seed(seed))
        assert loss(teacher + noise, teacher, target).item() > at_teacher


def test_feature_loss_argument_checks() -> None:
    with pytest.raises(ValueError, match="as many student as teacher"):
        create("at")([torch.randn(2, 3, 4, 4)], [])
    with pytest.raises(TypeError, match="needs extra arguments"):
        create("nd")([torch.randn(2, 3)], [torch.randn(2, 3)])
    with pytest.raises(UserError, match=r"needs \(N, C, H, W\) feature maps"):
        create("at")([torch.randn(2, 3)], [torch.randn(2, 3)])


# -- logit losses ------------------------------------------------------------------------------------------------

S2 = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T2 = [[2.0, 1.0, 0.0], [1.0, 1.0, 1.5]]


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_matches_hand_computation(temperature: float) -> None:
    kl = sum(_kl(_softmax(t, temperature), _softmax(s, temperature)) for s, t in zip(S2, T2))
    expected = kl / len(S2) * temperature**2
    value = create("kd", temperature=temperature)(torch.tensor(S2), torch.tensor(T2), torch.tensor([0, 2]))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_kd_parity_with_mdistiller_and_torchdistill_forms() -> None:
    g = torch.Generator().manual_seed(3)
    s, t, y = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g), torch.zeros(8, dtype=torch.long)
    temperature = 4.0
    log_p, q = F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
    mdistiller = F.kl_div(log_p, q, reduction="none").sum(1).mean() * temperature**2
    torchdistill = nn.KLDivLoss(reduction="batchmean")(log_p, q) * temperature**2
    ours = create("kd", temperature=temperature)(s, t, y)
    assert ours.item() == pytest.approx(mdistiller.item(), rel=1e-6)
    assert ours.item() == pytest.approx(torchdistill.item(), rel=1e-6)


def test_kd_high_temperature_limit_is_logit_matching() -> None:
    # Hinton et al. §2.1: for large T, T^2 KL -> (1 / 2C) sum_c (dz_c - mean(dz))^2 per sample.
    s, t = np.array(S2), np.array(T2)
    centred = (s - t) - (s - t).mean(axis=1, keepdims=True)
    expected = float(((centred**2).sum(axis=1) / (2 * s.shape[1])).mean())
    args = torch.tensor(S2, dtype=torch.float64), torch.tensor(T2, dtype=torch.float64), torch.tensor([0, 0])
    gaps = [abs(create("kd", temperature=t)(*args).item() - expected) for t in (4.0, 10.0, 100.0, 1000.0)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 1e-2
    assert gaps[-1] < 1e-3 * expected


S3 = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 0.5], [2.0, 0.0, 0.0, 1.0]]
T3 = [[2.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.5, -2.0], [0.5, 0.5, 3.0, 1.0]]
Y3 = [0, 2, 1]


def _dkd_hand(alpha: float, beta: float, temperature: float) -> float:
    tckd = nckd = 0.0
    for s, t, y in zip(S3, T3, Y3):
        ps, pt = _softmax(s, temperature), _softmax(t, temperature)
        tckd += _kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]])
        others = [c for c in range(len(s)) if c != y]
        nckd += _kl([pt[c] / (1 - pt[y]) for c in others], [ps[c] / (1 - ps[y]) for c in others])
    return (alpha * tckd + beta * nckd) * temperature**2 / len(S3)


@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (1.0, 0.0, 2.0)])
def test_dkd_matches_tckd_nckd_formula(alpha: float, beta: float, temperature: float) -> None:
    loss = create("dkd", alpha=alpha, beta=beta, temperature=temperature, warmup_epochs=0)
    value = loss(torch.tensor(S3), torch.tensor(T3), torch.tensor(Y3))
    assert value.item() == pytest.approx(_dkd_hand(alpha, beta, temperature), rel=1e-5)


def test_dkd_recovers_kd_with_the_papers_weights() -> None:
    # DKD paper, Eq. (7): KD = TCKD + (1 - p_y^teacher) NCKD, per sample.
    s, t, y, temperature = S3[1], T3[1], Y3[1], 3.0
    beta = 1 - _softmax(t, temperature)[y]
    dkd = create("dkd", alpha=1.0, beta=beta, temperature=temperature, warmup_epochs=0)
    kd = create("kd", temperature=temperature)
    args = torch.tensor([s]), torch.tensor([t]), torch.tensor([y])
    assert dkd(*args).item() == pytest.approx(kd(*args).item(), rel=1e-5)


def test_dkd_rejects_two_classes() -> None:
    with pytest.raises(UserError, match="NCKD is undefined for 2 classes"):
        create("dkd")(torch.randn(4, 2), torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("name", WARMUP_LOSSES)
def test_warmup_scales_linearly_then_saturates(name: str) -> None:
    student, teacher, extras = _generic_inputs(name)
    full = _evaluate(create(name, warmup_epochs=0), student, teacher, extras).item()
    loss = create(name, warmup_epochs=20)
    assert _evaluate(loss, student, teacher, extras).item() == pytest.approx(full / 20)  # before any set_epoch
    for epoch, factor in [(0, 1 / 20), (9, 10 / 20), (19, 1.0), (100, 1.0)]:
        loss.set_epoch(epoch)
        assert _evaluate(loss, student, teacher, extras).item() == pytest.approx(full * factor, rel=1e-6)
    with pytest.raises(ValueError):
        loss.set_epoch(-1)


def test_luminet_matches_hand_computation() -> None:
    alpha, temperature = 3.0, 2.0
    s, t = np.array(S3), np.array(T3)

    def perceive(z: np.ndarray) -> np.ndarray:
        return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)  # numpy var is the biased one

    qs, qt = perceive(s), perceive(t)
    kl = sum(_kl(_softmax(list(b), temperature), _softmax(list(a), temperature)) for a, b in zip(qs, qt))
    expected = alpha**2 * kl / len(s)
    loss = create("luminet", alpha=alpha, temperature=temperature, warmup_epochs=0)
    assert loss(torch.tensor(S3), torch.tensor(T3), torch.tensor(Y3)).item() == pytest.approx(expected, rel=1e-5)


def test_sinkd_matches_hand_computation() -> None:
    temperature, epsilon, rounds = 2.0, 0.5, 5
    ps = [_softmax(r, temperature) for r in S3]
    pt = [_softmax(r, temperature) for r in T3]
    cost = np.array([[sum(abs(a - b) for a, b in zip(x, y)) for y in pt] for x in ps])
    plan = np.exp(-cost / epsilon)
    for _ in range(rounds):
        plan = plan / plan.sum(axis=1, keepdims=True)
        plan = plan / plan.sum(axis=0, keepdims=True)
    expected = float((plan * cost).sum())
    loss = create("sinkd", temperature=temperature, epsilon=epsilon, iterations=rounds)
    assert loss(torch.tensor(S3), torch.tensor(T3), torch.tensor(Y3)).item() == pytest.approx(expected, rel=1e-5)


# -- feature losses ----------------------------------------------------------------------------------------------


def test_at_matches_explicit_normalisation_over_two_pairs() -> None:
    g = torch.Generator().manual_seed(1)
    pairs = [
        (torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 5, 2, 2, generator=g)),  # student pooled to 2x2
        (torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 7, 2, 2, generator=g)),
    ]
    expected = 0.0
    for s, t in pairs:
        s_np, t_np = s.numpy().astype(np.float64), t.numpy().astype(np.float64)
        if s_np.shape[2] != t_np.shape[2]:
            s_np = _block_mean(s_np, t_np.shape[2])
        a_s = (s_np**2).mean(axis=1).reshape(2, -1)
        a_t = (t_np**2).mean(axis=1).reshape(2, -1)
        a_s /= np.linalg.norm(a_s, axis=1, keepdims=True)
        a_t /= np.linalg.norm(a_t, axis=1, keepdims=True)
        expected += float(((a_s - a_t) ** 2).mean())
    value = create("at", p=2)([s for s, _ in pairs], [t for _, t in pairs])
    assert value.item() == pytest.approx(expected, rel=1e-5)


STUDENT_POINTS = [[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]
TEACHER_POINTS = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def test_rkd_distance_term_on_three_points() -> None:
    # Student triangle 3-4-5: mean non-zero distance 4. Teacher: 1, 1, sqrt(2), mean (2 + sqrt 2) / 3.
    m = (2 + math.sqrt(2)) / 3
    student = np.array([[0, 3 / 4, 4 / 4], [3 / 4, 0, 5 / 4], [4 / 4, 5 / 4, 0]])
    teacher = np.array([[0, 1, 1], [1, 0, math.sqrt(2)], [1, math.sqrt(2), 0]]) / m
    expected = _smooth_l1(student, teacher)
    loss = create("rkd", distance_weight=1.0, angle_weight=0.0)
    value = loss([torch.tensor(STUDENT_POINTS)], [torch.tensor(TEACHER_POINTS)])
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_rkd_angle_term_on_three_points() -> None:
    def cosines(points: list[list[float]]) -> np.ndarray:
        e = np.array(points)
        out = []
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out.append(0.0 if nu == 0 or nv == 0 else float(u @ v / (nu * nv)))
        return np.array(out)

    expected = 2.0 * _smooth_l1(cosines(STUDENT_POINTS), cosines(TEACHER_POINTS))
    loss = create("rkd", distance_weight=0.0, angle_weight=2.0)
    value = loss([torch.tensor(STUDENT_POINTS)], [torch.tensor(TEACHER_POINTS)])
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_catkd_matches_hand_cams(normalize: bool) -> None:
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 5, 4, 4, generator=g)
    s_head, t_head = nn.Linear(3, 4), nn.Linear(5, 4)
    expected_maps = []
    for f, head in ((s, s_head), (t, t_head)):
        w, x = head.weight.detach().numpy().astype(np.float64), f.numpy().astype(np.float64)
        cam = np.zeros((2, 4, 4, 4))
        for n in range(2):
            for k in range(4):
                for c in range(x.shape[1]):
                    cam[n, k] += w[k, c] * x[n, c]
        cam = _block_mean(cam, 2)
        if normalize:
            cam /= np.sqrt((cam**2).sum(axis=(2, 3), keepdims=True))
        expected_maps.append(cam)
    expected = float(((expected_maps[0] - expected_maps[1]) ** 2).mean())
    loss = create("catkd", resolution=2, normalize=normalize)
    assert loss([s], [t], student_head=s_head, teacher_head=t_head).item() == pytest.approx(expected, rel=1e-5)


def test_catkd_takes_one_pair_fed_to_the_classifier() -> None:
    heads = {"student_head": nn.Linear(3, 4), "teacher_head": nn.Linear(5, 4)}
    maps = [torch.randn(2, 3, 4, 4)] * 2, [torch.randn(2, 5, 4, 4)] * 2
    with pytest.raises(UserError, match="takes 1 tapped layer pair"):
        create("catkd")(*maps, **heads)
    with pytest.raises(UserError, match="classifier takes 3 features but the tapped map has 6"):
        create("catkd")([torch.randn(2, 6, 4, 4)], [torch.randn(2, 5, 4, 4)], **heads)


def test_nd_matches_hand_formula_and_is_zero_along_long_class_means() -> None:
    g = torch.Generator().manual_seed(4)
    s, t, means = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)
    y = torch.tensor([0, 1, 0])
    expected = 0.0
    for i in range(3):
        c = means[y[i]].numpy()
        unit = c / np.linalg.norm(c)
        longest = max(np.linalg.norm(s[i].numpy()), np.linalg.norm(t[i].numpy()))
        expected += 1 - float(s[i].numpy() @ unit) / longest
    loss = create("nd")
    value = loss([s], [t], target=y, teacher_class_means=[means])
    assert value.item() == pytest.approx(expected / 3, rel=1e-5)
    assert list(loss.parameters()) == []  # equal widths: no projector
    aligned = F.normalize(means, dim=1)[y] * (t.norm(dim=1, keepdim=True) + 1.0)
    assert loss([aligned], [t], target=y, teacher_class_means=[means]).item() == pytest.approx(0.0, abs=1e-6)


def test_nd_builds_a_projector_when_widths_differ() -> None:
    loss = create("nd")
    target, means = torch.tensor([0, 1, 0, 1]), [torch.randn(2, 5)]
    value = loss([torch.randn(4, 3)], [torch.randn(4, 5)], target=target, teacher_class_means=means)
    value.backward()
    linear = loss.adapters[0][2]
    assert isinstance(linear, nn.Linear) and linear.weight.shape == (5, 3) and linear.weight.grad is not None


def test_class_means_accumulate_over_batches() -> None:
    means = ClassMeans(num_classes=2)
    means.update([torch.tensor([[1.0, 0.0], [4.0, 4.0]])], torch.tensor([0, 1]))
    means.update([torch.tensor([[3.0, 2.0], [0.0, 2.0]])], torch.tensor([0, 1]))
    (table,) = means.compute()
    assert table.tolist() == [[2.0, 1.0], [2.0, 3.0]]
    empty = ClassMeans(num_classes=3)
    empty.update([torch.ones(2, 2)], torch.tensor([0, 0]))
    with pytest.raises(UserError, match="class\\(es\\) 1, 2"):
        empty.compute()


def _batchnorm_train(y: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def test_fitnets_matches_hand_connector_and_mse() -> None:
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 5, 2, 2, generator=g)
    loss = create("fitnets")
    value = loss([s], [t])
    conv, bn = loss.adapters[0][0], loss.adapters[0][1]
    assert conv.kernel_size == (3, 3) and conv.stride == (2, 2)
    with torch.no_grad():
        hinted = torch.relu(_batchnorm_train(F.conv2d(s, conv.weight, conv.bias, stride=2, padding=1), bn))
    expected = ((hinted - t) ** 2).mean().item()
    assert value.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("student_size", "kind"),
    [(4, nn.Conv2d), (8, nn.Conv2d), (2, nn.ConvTranspose2d), (6, nn.AdaptiveAvgPool2d), (3, nn.Upsample)],
)
def test_fitnets_connector_maps_to_teacher_shape(student_size: int, kind: type) -> None:
    s, t = torch.randn(2, 3, student_size, student_size), torch.randn(2, 5, 4, 4)
    loss = create("fitnets", relu=False)
    loss([s], [t])
    connector = loss.adapters[0]
    assert isinstance(connector[0], kind) and not isinstance(connector[-1], nn.ReLU)
    assert connector(s).shape == t.shape


def test_lazy_parts_appear_after_a_probe_and_learn() -> None:
    s, t = torch.randn(4, 3, 4, 4), torch.randn(4, 5, 4, 4)
    loss = create("fitnets")
    assert list(loss.parameters()) == []
    with torch.no_grad():
        loss([s], [t])
    params = list(loss.parameters())
    assert params and all(p.requires_grad for p in params)
    optimizer = torch.optim.SGD(params, lr=0.5)
    before = loss([s], [t]).item()
    for _ in range(20):
        optimizer.zero_grad()
        loss([s], [t]).backward()
        optimizer.step()
    assert loss([s], [t]).item() < before


def test_vkd_projection_is_orthogonal_and_matches_hand_formula() -> None:
    g = torch.Generator().manual_seed(6)
    s, t = torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 5, 2, 2, generator=g)
    loss = create("vkd")
    value = loss([s], [t])
    w = loss.adapters[0].weight.detach().numpy().astype(np.float64)  # (5, 3)
    np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-5)
    z_s = s.numpy().astype(np.float64).mean(axis=(2, 3))
    z_t = t.numpy().astype(np.float64).mean(axis=(2, 3))
    z_t = (z_t - z_t.mean(axis=1, keepdims=True)) / np.sqrt(z_t.var(axis=1, keepdims=True) + 1e-5)
    assert value.item() == pytest.approx(_smooth_l1(z_s @ w.T, z_t), rel=1e-5)


def test_lazy_adapter_follows_the_student_dtype() -> None:
    loss = create("vkd")
    loss([torch.randn(4, 3, dtype=torch.float64)], [torch.randn(4, 5, dtype=torch.float64)])
    assert all(p.dtype == torch.float64 for p in loss.parameters())
