"""The gate across sessions: latency normalised by the machine reference, the CPU's identity, version-1 baselines,
and the reference workload itself. Verdicts are tested on recorded (generated) series; real timing only through the
CLI, with tolerances no timing noise reaches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekd.bench.bootstrap import normalised_ratio, paired_ratio
from edgekd.bench.gate import Tolerances, compare, snapshot
from edgekd.bench.gate_latency import ReferenceTiming, SessionTiming, Unjudged
from edgekd.bench.reference import machine_difference, machine_identity, reference_digest, reference_model_bytes
from edgekd.cli import main
from tests.test_gate import _manifest, _run_dir

NAME = "student-onnx-fp32"
LATENCY = "latency p50 (ms)"


def series(median: float, n: int = 200, seed: int = 0) -> list[float]:
    """Latencies around ``median`` (ms) with a shared machine's right tail: lognormal, sigma 0.05."""
    return list(np.random.default_rng(seed).lognormal(np.log(median), 0.05, n))


def baseline_with_session(samples: list[float], reference: list[float]) -> dict[str, Any]:
    return snapshot(_manifest(), sessions={NAME: {"samples_ms": samples, "reference_ms": reference, "rounds": 10,
                                                  "block": 20}},
                    machine=machine_identity(), reference={"name": "r", "sha256": reference_digest()})


def latency_row(baseline: dict[str, Any], timing: Any) -> Any:
    rows = compare(baseline, _manifest(), Tolerances(), timings={NAME: timing}).rows
    return next(r for r in rows if r.metric == LATENCY)


def test_a_machine_slower_by_1_4_in_the_baseline_session_passes_when_the_reference_shows_it() -> None:
    """Baseline session 1.4× slower for the artifact and the reference alike (as measured between two sessions of one
    machine): raw ratio 1/1.4, machine ratio 1/1.4, normalised ratio 1, verdict ok; the same raw series judged without
    the reference would have been 'improved' (and the reverse drift a regression)."""
    art, ref = series(0.025, seed=1), series(0.030, seed=2)
    now_art, now_ref = series(0.025, seed=3), series(0.030, seed=4)
    base = baseline_with_session([v * 1.4 for v in art], [v * 1.4 for v in ref])
    row = latency_row(base, ReferenceTiming(now_art, now_ref, 20))
    assert row.verdict == "ok", row.change
    assert row.figures["raw"] == pytest.approx(np.median(now_art) / (1.4 * np.median(art)))
    assert row.figures["machine"] == pytest.approx(np.median(now_ref) / (1.4 * np.median(ref)))
    assert row.figures["raw_high"] < 0.9  # the raw interval alone lies wholly beyond the 10 % tolerance
    assert row.figures["low"] < 1.0 < row.figures["high"]
    assert "raw ×0." in row.change and "machine ×0." in row.change
    reverse = baseline_with_session([v / 1.4 for v in art], [v / 1.4 for v in ref])
    assert latency_row(reverse, ReferenceTiming(now_art, now_ref, 20)).verdict == "ok"


def test_a_student_1_3_times_slower_fails_on_an_unchanged_machine() -> None:
    art, ref = series(0.025, seed=1), series(0.030, seed=2)
    base = baseline_with_session(art, ref)
    slow = ReferenceTiming([v * 1.3 for v in series(0.025, seed=3)], series(0.030, seed=4), 20)
    row = latency_row(base, slow)
    assert row.verdict == "regression", row.change
    assert row.figures["ratio"] == pytest.approx(1.3, rel=0.03) and row.figures["low"] > 1.1
    same_session = latency_row(base, SessionTiming(art, [v * 1.3 for v in series(0.025, seed=3)], 20))
    assert same_session.verdict == "regression" and same_session.figures["machine"] is None


def test_block_intervals_agree_with_scipy_percentile_bootstrap_of_the_block_medians() -> None:
    """Blocks of 10 calls: each block's fastest call by hand, then scipy's percentile bootstrap of the statistic over
    rounds (paired: one sample of round ratios; normalised: two independent samples of artifact/reference
    quotients)."""
    from scipy import stats

    rng = np.random.default_rng(5)
    a, b, ra, rb = (rng.lognormal(m, 0.2, 200) for m in (0.0, 0.3, 0.1, 0.4))

    def blocks(v: np.ndarray) -> np.ndarray:
        return np.array([min(v[i:i + 10]) for i in range(0, v.size, 10)])

    def scipy_ci(samples: tuple[np.ndarray, ...], statistic: Any) -> Any:
        return stats.bootstrap(samples, statistic, n_resamples=4000, method="percentile", vectorized=True,
                               paired=False, random_state=np.random.default_rng(2)).confidence_interval

    ours = normalised_ratio(a, b, ra, rb, block=10, resamples=4000, seed=1)
    qa, qb = blocks(a) / blocks(ra), blocks(b) / blocks(rb)
    theirs = scipy_ci((qa, qb), lambda x, y, axis: np.median(y, axis=axis) / np.median(x, axis=axis))
    assert ours.ratio == pytest.approx(np.median(qb) / np.median(qa))
    assert ours.low == pytest.approx(theirs.low, rel=0.03) and ours.high == pytest.approx(theirs.high, rel=0.03)
    paired = paired_ratio(a, b, block=10, resamples=4000, seed=1)
    theirs = scipy_ci((blocks(b) / blocks(a),), lambda r, axis: np.median(r, axis=axis))
    assert paired.ratio == pytest.approx(np.median(blocks(b) / blocks(a)))
    assert paired.low == pytest.approx(theirs.low, rel=0.03) and paired.high == pytest.approx(theirs.high, rel=0.03)
    exact = normalised_ratio([1.0] * 9, [2.6] * 9, [2.0] * 9, [4.0] * 9, block=3)
    assert (exact.ratio, exact.low, exact.high) == pytest.approx((1.3, 1.3, 1.3))


def test_a_load_changing_from_round_to_round_cancels_in_the_paired_ratio() -> None:
    """Both series of a round see that round's load (×1.5 or ×30 on some blocks, as an oversubscribed machine
    gives): the paired ratio of identical models stays within 3 % of 1, and a 1.3× slower one is flagged."""
    rng = np.random.default_rng(3)
    load = np.repeat(rng.choice([1.0, 1.0, 1.5, 30.0], size=20), 20)
    old = 0.05 * load * rng.lognormal(0, 0.02, 400)
    same = paired_ratio(old, 0.05 * load * rng.lognormal(0, 0.02, 400), block=20)
    assert 0.97 < same.low <= same.high < 1.03
    slower = paired_ratio(old, 1.3 * 0.05 * load * rng.lognormal(0, 0.02, 400), block=20)
    assert slower.low > 1.25


CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 sse4_2 avx avx2 fma f16c avx512f avx512_bf16 avx512_vnni ht
"""


def test_machine_identity_keeps_the_kernel_selecting_flags_and_names_differences() -> None:
    ident = machine_identity(CPUINFO)
    assert ident == {"cpu": "AMD EPYC 9R14 96-Core Processor",
                     "flags": ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512f", "f16c", "fma", "sse4_2"]}
    assert machine_difference(ident, dict(ident)) is None
    other = machine_difference(ident, {"cpu": "Intel(R) Xeon(R) Platinum 8375C", "flags": ident["flags"]})
    assert other is not None and "'AMD EPYC 9R14 96-Core Processor'" in other and "8375C" in other
    fewer = machine_difference(ident, {"cpu": ident["cpu"], "flags": ["avx", "avx2", "f16c", "fma", "sse4_2"]})
    assert fewer is not None and "without avx512_bf16, avx512_vnni, avx512f" in fewer


def test_reference_model_is_deterministic_and_runs_alike_in_both_runtimes(tmp_path: Path) -> None:
    """The same bytes on every call; its logits in ONNX Runtime and OpenVINO agree with a torch evaluation of the
    architecture its docstring states, computed from the graph's own weights."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    from edgekd.bench.reference import REFERENCE_RUNTIMES, REFERENCE_SHAPE, reference_file, reference_input
    from edgekd.runtime import open_runner

    assert reference_model_bytes() == reference_model_bytes() and len(reference_digest()) == 64
    model = onnx.load_from_string(reference_model_bytes())
    assert [n.op_type for n in model.graph.node].count("Conv") == 8
    assert [n.op_type for n in model.graph.node].count("Add") == 3
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    x = torch.from_numpy(reference_input())
    assert tuple(x.shape) == REFERENCE_SHAPE

    def block(h: torch.Tensor, name: str) -> torch.Tensor:
        y = F.conv2d(F.relu(F.conv2d(h, w[f"{name}a_w"], padding=1)), w[f"{name}b_w"], padding=1)
        return F.relu(h + y)

    h = block(block(F.relu(F.conv2d(x, w["stem_w"], padding=1)), "b1"), "b2")
    h = block(F.relu(F.conv2d(h, w["down_w"], padding=1, stride=2)), "b3")
    expected = (h.mean(dim=(2, 3)) @ w["fc"].T + w["fc_b"]).numpy()
    assert REFERENCE_RUNTIMES == ("onnxruntime", "openvino")  # the table's runtimes that open an .onnx file
    with reference_file() as path:
        for runtime in REFERENCE_RUNTIMES:
            with open_runner(runtime, path, threads=1) as runner:
                np.testing.assert_allclose(runner(reference_input()), expected, rtol=1e-4, atol=1e-4)
    assert not path.exists()


def _v1_baseline(tmp_path: Path) -> Path:
    """A baseline as edgekd wrote it before the machine reference: version 1, the run's own latency samples."""
    art = _manifest()["artifacts"][0]
    metrics = art["metrics"]
    old = {"format": "edgekd-baseline", "version": 1, "recipe": "quickstart", "device": "x86-cpu", "smoke": False,
           "selected": art["name"], "edgekd_version": "0.1.0", "run_created": "2026-01-01T00:00:00+00:00",
           "git_commit": None, "created": "2026-01-01T00:00:00+00:00",
           "artifacts": {art["name"]: {
               "status": "ok", "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "bytes": 1000,
               "sha256": art["sha256"], "accuracy": 0.9, "test_samples": 360, "latency_ms": metrics["latency_ms"],
               "samples_ms": metrics["samples_ms"], "batch_size": 1, "threads": 2}}}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    return path


def test_a_version_1_baseline_is_read_with_a_note_and_no_latency_verdict(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "run", _manifest())
    v1 = _v1_baseline(tmp_path)
    assert main(["check", str(run), "--baseline", str(v1), "--rounds", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "version-1 baseline" in out and "not judged" in out and "Re-baseline with `edgekd baseline RUN -o" in out
    bigger = _run_dir(tmp_path, "bigger", _manifest(bytes=1001))
    assert main(["check", str(bigger), "--baseline", str(v1), "--rounds", "1"]) == 1  # sizes are still judged
    result = compare(json.loads(v1.read_text()), _manifest(), Tolerances())
    assert {r.metric: r.verdict for r in result.rows}[LATENCY] == "not judged" and result.notes
    capsys.readouterr()
    generous = ["--latency-tol", "1000", "--rounds", "2"]  # real timing; the verdict is not what is tested here
    assert main(["check", str(run), "--baseline", str(v1), "--baseline-run", str(run), "--json",
                 str(tmp_path / "gate.json"), *generous]) == 0  # the run's manifest gives the version-1 paths
    rows = json.loads((tmp_path / "gate.json").read_text())["rows"]
    assert next(r for r in rows if r["metric"] == LATENCY)["figures"]["mode"] == "same session"


def test_a_baseline_of_another_cpu_is_exit_2_unless_cross_machine(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "run", _manifest())
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(run), "-o", str(baseline), "--rounds", "2"]) == 0
    data = json.loads(baseline.read_text())
    assert data["version"] == 2 and data["machine"] == machine_identity()
    assert len(data["artifacts"][NAME]["session"]["samples_ms"]) == 2 * 20
    data["machine"]["cpu"] = "Some Other CPU 9000"
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(baseline), "--rounds", "2"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "measured on CPU 'Some Other CPU 9000'" in err and "--cross-machine" in err and "Traceback" not in err
    generous = ["--latency-tol", "1000", "--rounds", "2"]  # real timing; the verdict is not what is tested here
    assert main(["check", str(run), "--baseline", str(baseline), "--cross-machine", *generous]) == 0
    assert "cross-machine comparison" in " ".join(capsys.readouterr().out.split())


def test_baseline_run_with_a_replaced_artifact_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir(tmp_path, "run", _manifest())
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(run), "-o", str(baseline), "--rounds", "1"]) == 0
    replaced = _run_dir(tmp_path, "replaced", _manifest())
    (replaced / "export" / "m.onnx").write_bytes(reference_model_bytes() + b"\0")
    capsys.readouterr()
    assert main(["check", str(run), "--baseline", str(baseline), "--baseline-run", str(replaced)]) == 2
    assert "not the artifact student-onnx-fp32 of the baseline" in " ".join(capsys.readouterr().err.split())


def test_unjudged_latency_never_fails_the_gate() -> None:
    row = latency_row(baseline_with_session(series(0.02), series(0.03)), Unjudged("why"))
    assert (row.verdict, row.change, row.failed) == ("not judged", "why", False)
