"""Teacher-assistant chains (TAKD), automatic TA selection (AMD-style) and the ablation: unit and end-to-end tests."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.config import LossTerm, ModelRef, TrainConfig
from edgekd.data import DataBundle, load_dataset
from edgekd.distill import chain as chain_module
from edgekd.distill.ablation import dkd_term, grid_check, summarize
from edgekd.distill.assistants import Point, candidate_refs, choose, npsd, score
from edgekd.distill.chain import STEP_RECORD, STEP_WEIGHTS, Link, make_terms, state_digest, train_chain
from edgekd.distill.trainer import TrainResult
from edgekd.errors import UserError
from edgekd.models import count_parameters, create
from tests.conftest import FMNIST_DIR, ROOT, run_cli

KD = [LossTerm(name="kd", params={"temperature": 4.0})]
ONE_EPOCH = TrainConfig(epochs=1, batch_size=64, lr=0.05)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    bundle = load_dataset("digits", {}, data_dir=None, val_fraction=0.1, seed=0)
    return replace(bundle, train=bundle.train.subset(128, 0), val=bundle.val.subset(64, 0))


def plain_links(data: DataBundle, names: list[str], teacher: str) -> list[Link]:
    """A chain of zoo models below ``teacher``, each with KD terms for its (student, teacher) pair."""
    links, above = [], teacher
    for name in names:
        links.append(Link(name, lambda n=name: create(n, num_classes=data.num_classes, in_channels=1),
                          lambda n=name, a=above: make_terms(KD, ModelRef(name=n), ModelRef(name=a))))
        above = name
    return links


def test_chain_trains_in_order_each_step_taught_by_the_previous_result(digits: DataBundle, tmp_path: Path) -> None:
    teacher = create("plain6", num_classes=10, in_channels=1).eval()
    steps = train_chain(plain_links(digits, ["plain4", "plain2"], "plain6"), digits, ONE_EPOCH, tmp_path,
                        teacher=teacher, seed=3)
    assert [s.record["step"] for s in steps] == [1, 2]
    assert [s.record["name"] for s in steps] == ["plain4", "plain2"]
    assert [s.record["teacher"] for s in steps] == ["teacher", "plain4"]
    # lineage by weights: step 1 learnt from the teacher, step 2 from step 1's trained (best) weights
    assert steps[0].record["teacher_digest"] == state_digest(teacher)
    assert steps[1].record["teacher_digest"] == steps[0].record["digest"] == state_digest(steps[0].net)
    assert steps[0].record["parameters"] == count_parameters(create("plain4", num_classes=10, in_channels=1))
    for step in steps:
        folder = tmp_path / step.record["name"]
        saved = torch.load(folder / STEP_WEIGHTS, weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in step.net.state_dict().items())
        assert json.loads((folder / STEP_RECORD).read_text())["digest"] == step.record["digest"]
        assert step.record["reused"] is False and len(step.record["history"]) == 1


class CountingTrainer(chain_module.Trainer):
    """The real trainer, recording which steps it was asked to train."""

    labels: list[str] = []

    def fit(self) -> TrainResult:
        CountingTrainer.labels.append(self.label)
        return super().fit()


def test_resume_skips_finished_steps(digits: DataBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teacher = create("plain6", num_classes=10, in_channels=1).eval()
    links = plain_links(digits, ["plain4", "plain2"], "plain6")
    first = train_chain(links, digits, ONE_EPOCH, tmp_path, teacher=teacher, seed=1)
    monkeypatch.setattr(chain_module, "Trainer", CountingTrainer)

    CountingTrainer.labels = []
    again = train_chain(links, digits, ONE_EPOCH, tmp_path, teacher=teacher, seed=1)
    assert CountingTrainer.labels == []  # both steps carry their finished marker: nothing is trained
    assert [s.record["reused"] for s in again] == [True, True]
    assert [state_digest(s.net) for s in again] == [s.record["digest"] for s in first]

    # an interruption after step 1: step 2 has no marker yet, so only step 2 trains, taught by step 1's weights
    (tmp_path / "plain2" / STEP_RECORD).unlink()
    CountingTrainer.labels = []
    resumed = train_chain(links, digits, ONE_EPOCH, tmp_path, teacher=teacher, seed=1)
    assert CountingTrainer.labels == ["plain2"]
    assert [s.record["reused"] for s in resumed] == [True, False]
    assert resumed[1].record["teacher_digest"] == first[0].record["digest"]
    assert resumed[1].record["digest"] == first[1].record["digest"]  # resumed from its last epoch checkpoint


def test_a_finished_step_returns_the_same_net_as_a_reused_one(digits: DataBundle, tmp_path: Path) -> None:
    """Trained in channels-last, a step's net still leaves the chain as a reused one does (CPU, contiguous), so a
    sub-run that resumes after its step finished measures bit-identical outputs."""
    teacher = create("plain6", num_classes=10, in_channels=1).eval()
    links = plain_links(digits, ["plain4"], "plain6")
    config = ONE_EPOCH.model_copy(update={"amp": False, "channels_last": True})
    fresh = train_chain(links, digits, config, tmp_path, teacher=teacher, seed=2)[0]
    reused = train_chain(links, digits, config, tmp_path, teacher=teacher, seed=2)[0]
    assert (fresh.record["reused"], reused.record["reused"]) == (False, True)
    for step in (fresh, reused):
        weight = step.net.features[0].weight
        assert weight.device.type == "cpu" and weight.is_contiguous() and not step.net.training
    x = digits.test.x[:256].float()
    with torch.no_grad():
        assert torch.equal(fresh.net(x), reused.net(x))


def test_same_seed_same_initial_weights_in_any_chain(digits: DataBundle, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[torch.Tensor] = []

    def build() -> torch.nn.Module:
        net = create("plain2", num_classes=10, in_channels=1)
        built.append(net.features[0].weight.detach().clone())
        return net

    for folder in ("a", "b"):
        torch.manual_seed(1234 if folder == "a" else 99)  # the caller's RNG state must not matter
        train_chain([Link("plain2", build)], digits, ONE_EPOCH, tmp_path / folder, seed=7)
    assert torch.equal(built[0], built[1])


def test_score_is_the_height_above_the_line_by_hand() -> None:
    teacher, student = Point(1.0, 0.90), Point(0.1, 0.70)
    candidates = [Point(0.5, 0.88), Point(0.25, 0.84), Point(0.75, 0.89)]
    # by hand: NPSD(T, c) = (0.90 - p_c) / (0 - ln s_c); NPSD(c, S) = (p_c - 0.70) / (ln s_c - ln 0.1);
    # height = p_c - (0.70 + (ln s_c - ln 0.1) / (0 - ln 0.1) * 0.20)
    #   s = 0.50: 0.02 / 0.693147 = 0.028854,  0.18 / 1.609438 = 0.111840; 1.609438 / 2.302585 = 0.698970 -> 0.040206
    #   s = 0.25: 0.06 / 1.386294 = 0.043281,  0.14 / 0.916291 = 0.152790; 0.916291 / 2.302585 = 0.397940 -> 0.060412
    #   s = 0.75: 0.01 / 0.287682 = 0.034761,  0.19 / 2.014903 = 0.094298; 2.014903 / 2.302585 = 0.875061 -> 0.014988
    best, scores = choose(candidates, teacher, student)
    assert [s["npsd_teacher_side"] for s in scores] == pytest.approx([0.028854, 0.043281, 0.034761], abs=1e-6)
    assert [s["npsd_student_side"] for s in scores] == pytest.approx([0.111840, 0.152790, 0.094298], abs=1e-6)
    assert [s["score"] for s in scores] == pytest.approx([0.040206, 0.060412, 0.014988], abs=1e-6)
    assert best == 1


def test_noise_next_to_the_student_does_not_beat_the_knee() -> None:
    """Issue 12's case: two points of noise just above the student won under the NPSD difference (0.374 vs 0.074);
    by height the knee, 2.4 times as high, wins."""
    teacher, student = Point(1.0, 0.75), Point(0.1, 0.65)
    near_student, knee = Point(0.105, 0.67), Point(0.30, 0.74)
    # the old criterion, by hand: NPSD(c, S) - NPSD(T, c)
    old = [npsd(c, student) - npsd(teacher, c) for c in (near_student, knee)]
    assert old == pytest.approx([0.374, 0.074], abs=5e-4)
    # heights by hand: 0.67 - (0.65 + 0.048790 / 2.302585 * 0.1) = 0.017881; 0.74 - (0.65 + 1.098612 / 2.302585 * 0.1)
    best, scores = choose([near_student, knee], teacher, student)
    assert [s["score"] for s in scores] == pytest.approx([0.017881, 0.042288], abs=1e-6)
    assert best == 1


def test_score_is_zero_on_the_chord_and_ties_go_to_the_smaller() -> None:
    teacher, student = Point(1.0, 0.9), Point(0.1, 0.7)
    # sqrt(0.1) is half-way in log-scale, so the straight line through both anchors gives it accuracy 0.80
    on_chord = Point(math.sqrt(0.1), 0.80)
    assert score(on_chord, teacher, student)["score"] == pytest.approx(0.0, abs=1e-12)
    assert score(Point(math.sqrt(0.1), 0.81), teacher, student)["score"] == pytest.approx(0.01, abs=1e-12)
    best, _ = choose([Point(0.6, 0.9), Point(0.4, 0.9)], Point(1.0, 0.9), Point(0.2, 0.9))  # all flat: tie
    assert best == 1
    with pytest.raises(ValueError):
        npsd(Point(0.2, 0.5), Point(0.4, 0.6))


def test_grid_keeps_family_members_between_student_and_teacher_spread_in_log_scale() -> None:
    def parameters(ref: ModelRef) -> int:
        return count_parameters(create(ref.name, num_classes=10, in_channels=1, **ref.kwargs))

    teacher, student = ModelRef(name="resnet32"), ModelRef(name="resnet8")
    every = candidate_refs(teacher, student, parameters, explicit=[], widths=[1.0], max_candidates=10)
    assert [(r.name, n) for r, n in every] == [("resnet14", 174970), ("resnet20", 272186), ("resnet26", 369402)]
    # 2 of them nearest to ln-scale thirds between 77,754 and 466,618 parameters: e^11.859 and e^12.456
    two = candidate_refs(teacher, student, parameters, explicit=[], widths=[1.0], max_candidates=2)
    assert [r.name for r, _ in two] == ["resnet14", "resnet20"]
    wide = candidate_refs(teacher, student, parameters, explicit=[], widths=[1.0, 2.0], max_candidates=10)
    assert ("resnet8", {"width": 2.0}) in [(r.name, r.kwargs) for r, _ in wide]
    with pytest.raises(UserError, match="not strictly between"):
        candidate_refs(teacher, student, parameters, explicit=[ModelRef(name="resnet44")], widths=[1.0],
                       max_candidates=4)
    with pytest.raises(UserError, match="different zoo families"):
        candidate_refs(teacher, ModelRef(name="plain2"), parameters, explicit=[], widths=[1.0], max_candidates=4)


def test_ablation_table_mean_and_std_match_numpy() -> None:
    accuracies = {"no-kd": [0.81, 0.83, 0.80], "kd": [0.84, 0.86, 0.85], "takd": [0.855, 0.85, 0.87]}
    runs = [{"variant": v, "seed": s, "test_accuracy": a, "chain": [v]}
            for v, values in accuracies.items() for s, a in zip([2, 0, 1], values)]
    table = summarize(runs, list(accuracies))
    for row in table:
        values = np.array(accuracies[row["variant"]])
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert row["std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert row["gain"] == pytest.approx(values.mean() - np.mean(accuracies["no-kd"]), abs=1e-12)
        assert row["seeds"] == [0, 1, 2]
    assert summarize([{"variant": "kd", "seed": 0, "test_accuracy": 0.9, "chain": []}], ["kd"])[0]["std"] is None


def test_ablation_table_reports_the_last_epoch_and_applies_the_spread_rule_by_hand() -> None:
    best = {"no-kd": [0.80, 0.82, 0.81], "kd": [0.84, 0.85, 0.86], "dkd": [0.80, 0.83, 0.83]}
    last = {"no-kd": [0.79, 0.80, 0.81], "kd": [0.83, 0.85, 0.84], "dkd": [0.82, 0.82, 0.81]}
    runs = [{"variant": v, "seed": s, "test_accuracy": best[v][s], "last_test_accuracy": last[v][s], "chain": []}
            for v in best for s in range(3)]
    rows = {row["variant"]: row for row in summarize(runs, list(best))}
    # no-kd: mean 0.81, std 0.01; kd: mean 0.85 (+4 points), std 0.01: a finding
    assert rows["kd"]["gain"] == pytest.approx(0.04, abs=1e-12) and rows["kd"]["finding"] is True
    # dkd: mean 0.82 (+1 point), std sqrt(((0.02)^2 + 2 (0.01)^2) / 2) = 0.01732 > 1 point: within the spread
    assert rows["dkd"]["std"] == pytest.approx(0.017320508, abs=1e-9) and rows["dkd"]["finding"] is False
    assert rows["no-kd"]["finding"] is None
    assert rows["kd"]["last_accuracies"] == last["kd"] and rows["kd"]["last_mean"] == pytest.approx(0.84, abs=1e-12)
    assert rows["no-kd"]["last_std"] == pytest.approx(0.01, abs=1e-12)
    older = [{k: v for k, v in r.items() if k != "last_test_accuracy"} for r in runs]
    assert summarize(older, ["kd"])[0]["last_mean"] is None  # records without the last epoch: not made up


def test_grid_check_ranks_the_selected_assistant_against_the_grid_by_hand() -> None:
    accuracies = {"ta-grid:r14": [0.84, 0.86, 0.85], "ta-grid:r20": [0.87, 0.86, 0.88],
                  "ta-grid:r26": [0.85, 0.85, 0.86]}
    runs = [{"variant": v, "seed": s, "test_accuracy": a, "chain": [v]}
            for v, values in accuracies.items() for s, a in enumerate(values)]
    table = summarize(runs, list(accuracies))
    # means 0.85, 0.87, 0.8533; stds 0.01, 0.01, 0.005774: r14 is 2 points below r20, more than the 1-point spread
    worse = grid_check(table, "r14")
    assert (worse["best"], worse["rank"], worse["candidates"]) == ("r20", 3, 3)
    assert worse["gap"] == pytest.approx(0.02, abs=1e-12) and worse["spread"] == pytest.approx(0.01, abs=1e-12)
    assert worse["finding"] is True
    near = grid_check(table, "r26")  # 1.67 points below, spread max(0.01, 0.0058) = 0.01: still a finding
    assert near["rank"] == 2 and near["gap"] == pytest.approx(0.87 - 0.8533333, abs=1e-6) and near["finding"]
    best = grid_check(table, "r20")
    assert best["rank"] == 1 and best["gap"] == 0 and not best["finding"]
    noisy = summarize([{"variant": "ta-grid:a", "seed": s, "test_accuracy": a, "chain": []}
                       for s, a in enumerate([0.80, 0.90])]
                      + [{"variant": "ta-grid:b", "seed": s, "test_accuracy": a, "chain": []}
                         for s, a in enumerate([0.86, 0.87])], ["ta-grid:a", "ta-grid:b"])
    assert grid_check(noisy, "a")["finding"] is False  # 1.5 points below b, inside a's spread of 7.07 points
    with pytest.raises(ValueError, match="no ta-grid row"):
        grid_check(table, "r32")


def test_dkd_variant_uses_the_published_defaults_with_a_proportional_warmup() -> None:
    from edgekd.config import Recipe
    from edgekd.stages.ablation import objective

    assert dkd_term(240).params == {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 20}  # mdistiller
    assert [dkd_term(e).params["warmup_epochs"] for e in (12, 60, 1)] == [1, 5, 1]
    base = {"name": "r", "data": {"name": "digits"}, "teacher": {"model": {"name": "plain8"}},
            "student": {"model": {"name": "plain2"}},
            "distill": {"ce_weight": 0.5, "losses": [{"name": "kd", "params": {"temperature": 2.0}}]}}
    recipe = Recipe.model_validate({**base, "ablation": {"variants": ["no-kd", "kd", "dkd"]}})
    assert objective(recipe, "no-kd", 12) == ([], 1.0)
    assert objective(recipe, "kd", 12) == (recipe.distill.losses, 0.5)  # the recipe's own terms
    assert objective(recipe, "dkd", 12) == ([dkd_term(12)], 1.0)
    with pytest.raises(ValueError, match="ablation variant 'dkd' needs a teacher"):
        Recipe.model_validate({**base, "teacher": None, "distill": {"losses": []}, "ablation": {"variants": ["dkd"]}})
    with pytest.raises(ValueError, match="ablation variant 'ta-grid' needs distill.auto_assistant"):
        Recipe.model_validate({**base, "ablation": {"variants": ["ta-grid"]}})


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _stage(run_dir: Path, name: str) -> dict:
    return next(s for s in _manifest(run_dir)["stages"] if s["name"] == name)


DIGITS_CHAIN = [
    "--set", "teacher.model.name=plain8", "--set", "student.model.name=plain2",
    "--set", "distill.assistants=[{name: plain6}]", "--set", "distill.auto_assistant={max_candidates: 2}",
    "--set", "ablation={seeds: [0, 1, 2], variants: [no-kd, kd, dkd, takd, auto-ta, ta-grid]}", "--set", "export=null",
    "--set", "bench.runs=3", "--set", "bench.warmup=0",
]


@pytest.mark.slow
def test_digits_chain_auto_assistant_and_ablation_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["run", str(ROOT / "pipelines" / "quickstart.yaml"), "--device", "x86-cpu", "--smoke",
            "--out", str(run_dir), *DIGITS_CHAIN]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr

    selection = _stage(run_dir, "select-assistant")["info"]
    assert [c["name"] for c in selection["candidates"]] == ["plain4", "plain6"]  # the plain family between 2 and 8
    assert sum(c["selected"] for c in selection["candidates"]) == 1
    chosen = next(c for c in selection["candidates"] if c["selected"])
    assert chosen["score"] == max(c["score"] for c in selection["candidates"])
    assert json.loads((run_dir / "select-assistant" / "assistant.json").read_text())["model"]["name"] == chosen["name"]

    distill = _stage(run_dir, "distill")["info"]
    assert distill["chain"] == ["teacher", chosen["name"], "student"] and distill["chain_source"] == "auto"
    assert distill["steps"][1]["teacher_digest"] == distill["steps"][0]["digest"]
    artifacts = {a["name"]: a for a in _manifest(run_dir)["artifacts"]}
    assistant = artifacts[f"assistant-1-{chosen['name']}"]
    assert assistant["role"] == "assistant" and 0 <= assistant["metrics"]["accuracy"] <= 1  # evaluated on test

    ablation = _stage(run_dir, "ablation")["info"]
    assert ablation["seeds"] == [0, 1]  # a smoke run trains the first two seeds
    rows = {row["variant"]: row for row in ablation["table"]}
    assert list(rows) == ["no-kd", "kd", "dkd", "takd", "auto-ta", "ta-grid:plain4", "ta-grid:plain6"]
    assert rows["dkd"]["same_chain_as"] is None  # not kd's
    # the grid's chain through plain6 is the manual TAKD chain; the one through the choice is auto-ta's (or takd's)
    assert rows["ta-grid:plain6"]["same_chain_as"] == "takd"
    assert rows[f"ta-grid:{chosen['name']}"]["accuracies"] == rows["auto-ta"]["accuracies"]
    assert rows["ta-grid:plain4"]["same_chain_as"] == ("auto-ta" if chosen["name"] == "plain4" else None)
    # every chain is trained once per seed, in the run directory's cache; a twin row points at its twin's sub-run
    trained = [r for r in ablation["runs"] if r.get("same_chain_as") is None]
    assert sorted(p.name for p in (run_dir / "cache" / "ablation").iterdir()) == sorted(
        Path(r["folder"]).name for r in trained)
    runs = {(r["variant"], r["seed"]): r for r in ablation["runs"]}
    assert (runs["ta-grid:plain4", 1]["folder"] == runs["auto-ta", 1]["folder"]) == (chosen["name"] == "plain4")
    best = max(("plain4", "plain6"), key=lambda name: (rows[f"ta-grid:{name}"]["mean"], name == chosen["name"]))
    gap = rows[f"ta-grid:{best}"]["mean"] - rows[f"ta-grid:{chosen['name']}"]["mean"]
    assert ablation["grid"]["selected"] == chosen["name"] and ablation["grid"]["gap"] == pytest.approx(gap)
    assert ablation["grid"]["rank"] == (1 if gap == 0 else 2)
    for row in ablation["table"]:
        mine = [r["test_accuracy"] for r in ablation["runs"] if r["variant"] == row["variant"]]
        assert row["mean"] == pytest.approx(np.mean(mine)) and row["std"] == pytest.approx(np.std(mine, ddof=1))
    for r in ablation["runs"]:  # one smoke epoch: the last epoch is the best one, the same weights
        assert (r["last_epoch"], r["last_test_accuracy"]) == (1, r["test_accuracy"])
    takd = next(r for r in ablation["runs"] if r["variant"] == "takd" and r["seed"] == 0)
    assert [s["name"] for s in takd["steps"]] == ["step-1-plain6", "student"]
    report = (run_dir / "report.md").read_text()
    sections = ("## Teacher-assistant selection", "## Teacher-assistant chain", "## Ablation: does distillation pay?")
    assert all(title in report for title in sections)
    assert f"Selected assistant **{chosen['name']}**: rank {ablation['grid']['rank']} of 2 candidates" in report

    # a narrower ablation (a new attempt of the stage) after one sub-run was interrupted before its result: the
    # finished sub-runs are read back from the cache, the interrupted one continues from its step checkpoints
    kd1 = runs["kd", 1]
    (run_dir / kd1["folder"] / "result.json").unlink()
    no_kd0 = run_dir / runs["no-kd", 0]["folder"] / "result.json"  # as written before last-epoch figures existed
    older = json.loads(no_kd0.read_text())
    no_kd0.write_text(json.dumps({k: v for k, v in older.items() if not k.startswith("last_")}))
    narrower = [a.replace("takd, auto-ta, ta-grid]", "takd]") for a in args]
    result = run_cli(*narrower)
    assert result.returncode == 0, result.stderr
    stages = {s["name"]: s for s in _manifest(run_dir)["stages"]}
    assert stages["ablation"]["reason"] == "stage config changed"
    assert stages["distill"]["status"] == "cached" and stages["select-assistant"]["status"] == "cached"
    assert stages["report"]["status"] == "done"  # its ablation table changed
    report = (run_dir / "report.md").read_text()
    assert "| takd |" in report and "| auto-ta |" not in report
    again = _stage(run_dir, "ablation")["info"]
    assert [row["variant"] for row in again["table"]] == ["no-kd", "kd", "dkd", "takd"]
    fresh = [(r["variant"], r["seed"]) for r in again["runs"] if not r["reused"]]
    assert fresh == [("no-kd", 0), ("kd", 1)]
    completed = next(r for r in again["runs"] if (r["variant"], r["seed"]) == ("no-kd", 0))
    assert completed["steps"][0]["reused"] is True and completed["last_test_accuracy"] == older["last_test_accuracy"]
    kd1_again = next(r for r in again["runs"] if (r["variant"], r["seed"]) == ("kd", 1))
    assert kd1_again["steps"][0]["reused"] is True  # its finished student step was loaded, not retrained
    assert [(r["variant"], r["test_accuracy"]) for r in again["runs"]] == [
        (r["variant"], r["test_accuracy"]) for r in ablation["runs"] if r["variant"] in ("no-kd", "kd", "dkd", "takd")]


@pytest.mark.slow
@pytest.mark.fmnist
def test_fmnist_takd_recipe_smoke(tmp_path: Path) -> None:
    missing = [f for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz") if not (FMNIST_DIR / f).is_file()]
    if missing:
        pytest.skip(f"Fashion-MNIST IDX files not in {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")
    run_dir = tmp_path / "fmnist"
    result = run_cli("run", str(ROOT / "pipelines" / "fmnist-takd.yaml"), "--device", "x86-cpu", "--smoke",
                     "--out", str(run_dir), "--set", "bench.runs=5", "--set", "bench.warmup=1")
    assert result.returncode == 0, result.stderr
    statuses = {s["name"]: s["status"] for s in _manifest(run_dir)["stages"]}
    for stage in ("train-teacher", "select-assistant", "distill", "export", "evaluate", "bench", "ablation", "report"):
        assert statuses[stage] == "done"
    table = _stage(run_dir, "ablation")["info"]["table"]
    assert [row["variant"] for row in table] == ["no-kd", "kd", "takd", "auto-ta"]
    assert "## Ablation: does distillation pay?" in (run_dir / "report.md").read_text()
