"""The CI gate: a run against a committed baseline — size exact, accuracy within points, latency noise-aware.

``edgekd baseline RUN -o baseline.json`` stores, per artifact, its bytes, digests, validation and test accuracy and
latency samples timed beside the machine reference (:mod:`edgekd.bench.reference`), with the CPU's identity, and the
split that chose the deployed artifact (``selected_by``). ``edgekd check RUN --baseline baseline.json`` compares a
run with it:

- **size**: bytes, exactly; a regression when ``new - old > size_tol`` bytes (default 0: one byte more fails);
- **accuracy**, validation and test each: a regression when it drops by more than ``accuracy_tol`` points (default
  0.5 points); a baseline without validation accuracy (an older edgekd) has no validation row;
- **latency**: a ratio new / old with a seeded percentile-bootstrap interval, never of two sessions' raw latencies
  (:mod:`edgekd.bench.gate_latency`): both artifacts timed interleaved in this session when the baseline's run is
  at hand, else the ratio divided by the machine reference's ratio; a regression only when the *whole* interval lies
  above ``1 + latency_tol`` (default 10 %, the factor asv's ``compare`` uses by default); faster only when the whole
  interval lies below ``1 - latency_tol``; without a way to measure it, reported as ``not judged``;
- an artifact of the baseline missing from the run, or failed in it, is a regression; a new artifact is reported.

Comparisons across recipes, devices, smoke settings or bench batch sizes are refused (bad input). A baseline of
version 1 (no machine reference) is read: its sizes and accuracies are judged, its latencies only against its run's
artifacts, with a note saying how to re-baseline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgekd.bench.gate_latency import METRIC, Timing, Unjudged, describe, latency_judgement
from edgekd.errors import UserError

BASELINE_FORMAT = "edgekd-baseline"
BASELINE_VERSION = 2
#: versions this edgekd reads; version 1 has no machine reference
READABLE_VERSIONS = (1, 2)
OLD_BASELINE_NOTE = ("{source} is a version-1 baseline, written by an edgekd without a machine reference: its "
                     "latencies were timed in another session, whose machine speed this check cannot know, so they "
                     "are not compared (sizes and accuracies are). Re-baseline with `edgekd baseline RUN -o "
                     "{source}`, or give `--baseline-run OLD_RUN` (the run the baseline was made from) to time both "
                     "runs' artifacts here.")


@dataclass(frozen=True)
class Tolerances:
    """How much worse a run may be than its baseline before the gate fails."""

    size_bytes: int = 0
    accuracy_points: float = 0.5
    latency_pct: float = 10.0
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size_bytes < 0 or self.accuracy_points < 0 or self.latency_pct < 0:
            raise UserError("check: tolerances must be >= 0 (--size-tol, --accuracy-tol, --latency-tol)")


@dataclass
class Row:
    """One artifact and metric: old, new, change and verdict (``ok``, ``regression``, ``improved``, ``new``)."""

    artifact: str
    metric: str
    old: str
    new: str
    change: str
    verdict: str
    figures: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return self.verdict == "regression"


@dataclass
class GateResult:
    """Every row of a check, and what was compared."""

    rows: list[Row] = field(default_factory=list)
    recipe: str = ""
    device: str = ""
    tolerances: Tolerances = field(default_factory=Tolerances)
    notes: list[str] = field(default_factory=list)
    selected: str | None = None
    selected_by: str | None = None

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.failed]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def summary(self) -> str:
        t = self.tolerances
        verdict = "passed" if self.passed else f"FAILED: {len(self.regressions)} regression(s)"
        chosen = (f"; deployed {self.selected}, chosen on the {self.selected_by or 'test'} split"
                  if self.selected else "")
        return (f"edgekd gate {verdict} — {self.recipe} on {self.device}{chosen}; tolerances: size {t.size_bytes} B, "
                f"accuracy {t.accuracy_points} points, latency {t.latency_pct} % (whole {100 * t.confidence:.0f} % "
                f"bootstrap interval of the ratio beyond it)")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "recipe": self.recipe, "device": self.device, "selected": self.selected,
                "selected_by": self.selected_by, "tolerances": self.tolerances.__dict__, "notes": self.notes,
                "rows": [r.__dict__ for r in self.rows]}


def snapshot(manifest: dict[str, Any], *, sessions: dict[str, dict[str, Any]] | None = None,
             machine: dict[str, Any] | None = None, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the gate compares of a run: a baseline document (also the form a run is compared in).

    ``sessions`` maps an artifact name to its latency timed beside the machine reference (``samples_ms``,
    ``reference_ms``, ``rounds``, ``block``, the runner ``options``); ``machine`` is
    :func:`edgekd.bench.reference.machine_identity` and ``reference`` names the reference workload (``name``,
    ``sha256``)."""
    artifacts = {}
    for art in manifest["artifacts"]:
        metrics = art.get("metrics", {})
        artifacts[art["name"]] = {
            "status": art.get("status", "ok"), "format": art["format"], "precision": art["precision"],
            "runtime": art["runtime"], "path": art.get("path"), "bytes": art["bytes"], "sha256": art["sha256"],
            "combined_sha256": art.get("combined_sha256") or art["sha256"],
            "val_accuracy": metrics.get("val_accuracy"), "val_samples": metrics.get("val_samples"),
            "accuracy": metrics.get("accuracy"), "test_samples": metrics.get("test_samples"),
            "latency_ms": metrics.get("latency_ms"), "batch_size": metrics.get("batch_size"),
            "threads": metrics.get("threads"), "session": (sessions or {}).get(art["name"]),
        }
    return {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "recipe": manifest["recipe"],
            "device": manifest["device"], "smoke": manifest["smoke"], "selected": manifest.get("selected"),
            "selected_by": manifest.get("selected_by"),
            "edgekd_version": manifest["edgekd_version"], "run_created": manifest["created"],
            "git_commit": manifest.get("provenance", {}).get("git_commit"),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
            "reference": reference, "artifacts": artifacts}


def load_baseline(path: Path) -> dict[str, Any]:
    """A baseline file, or a UserError naming what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: baseline file not found (make one with `edgekd baseline RUN -o {path}`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON baseline ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT or not isinstance(
            data.get("artifacts"), dict):
        raise UserError(f"{path}: not an edgekd baseline (expected \"format\": \"{BASELINE_FORMAT}\"; make one with "
                        "`edgekd baseline RUN -o FILE`)")
    if data.get("version") not in READABLE_VERSIONS:
        raise UserError(f"{path}: baseline version {data.get('version')!r}; this edgekd reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS))} (re-baseline with `edgekd baseline RUN -o {path}`)")
    return data


def check_comparable(old: dict[str, Any], new: dict[str, Any], source: str) -> None:
    for key in ("recipe", "device", "smoke"):
        if old[key] != new[key]:
            raise UserError(f"{source}: baseline is of {key} {old[key]!r}, this run of {key} {new[key]!r}; compare "
                            "runs of the same recipe on the same device (and both smoke or neither)")
    for name, art in new["artifacts"].items():
        ref = old["artifacts"].get(name)
        if ref and ref.get("batch_size") and art.get("batch_size") and ref["batch_size"] != art["batch_size"]:
            raise UserError(f"{source}: {name} was timed with batch {ref['batch_size']} in the baseline and batch "
                            f"{art['batch_size']} in this run; latencies of different batches do not compare")


def _size_row(name: str, old: dict[str, Any], new: dict[str, Any], tol: Tolerances) -> Row:
    delta = new["bytes"] - old["bytes"]
    verdict = "regression" if delta > tol.size_bytes else "improved" if delta < 0 else "ok"
    change = f"{delta:+,} B ({100 * delta / old['bytes']:+.2f} %)" if old["bytes"] else f"{delta:+,} B"
    if delta == 0 and new["sha256"] != old["sha256"]:
        change += ", content changed"
    return Row(name, "size (bytes)", f"{old['bytes']:,}", f"{new['bytes']:,}", change, verdict)


#: the accuracy rows of the gate: (snapshot key, metric name in the table)
ACCURACY_METRICS = (("val_accuracy", "val accuracy"), ("accuracy", "test accuracy"))


def _accuracy_row(name: str, old: dict[str, Any], new: dict[str, Any], tol: Tolerances, key: str, metric: str
                  ) -> Row | None:
    a, b = old.get(key), new.get(key)
    if a is None:
        return None if b is None else Row(name, metric, "—", f"{b:.4f}", "newly measured", "new")
    if b is None:
        return Row(name, metric, f"{a:.4f}", "—", "no longer measured", "regression")
    points = 100 * (b - a)
    verdict = "regression" if points < -tol.accuracy_points - 1e-9 else "improved" if points > 1e-9 else "ok"
    return Row(name, metric, f"{a:.4f}", f"{b:.4f}", f"{points:+.2f} points", verdict)


def _latency_row(name: str, old: dict[str, Any], timing: Timing, tol: Tolerances) -> Row:
    judgement = latency_judgement(old, timing, latency_pct=tol.latency_pct, resamples=tol.resamples,
                                  confidence=tol.confidence, seed=tol.seed)
    old_ms = judgement.get("old_ms") or (old.get("latency_ms") or {}).get("p50")
    new_ms = judgement.get("new_ms")
    return Row(name, METRIC, f"{old_ms:.4f}" if old_ms else "—", f"{new_ms:.4f}" if new_ms else "—",
               describe(judgement), judgement["verdict"], judgement)


NOT_TIMED = Unjudged("not timed in this comparison (`edgekd check` times it)")


def compare(baseline: dict[str, Any], manifest: dict[str, Any], tol: Tolerances, *, source: str = "baseline",
            timings: dict[str, Timing] | None = None) -> GateResult:
    """Rows of the gate for the run ``manifest`` against ``baseline`` (see the module docstring); ``timings`` holds
    each artifact's latency measurement of this check (an artifact without one is ``not judged``)."""
    new = snapshot(manifest)
    check_comparable(baseline, new, source)
    result = GateResult(recipe=new["recipe"], device=new["device"], tolerances=tol, selected=new["selected"],
                        selected_by=new["selected_by"])
    if baseline.get("version") == 1:
        result.notes.append(OLD_BASELINE_NOTE.format(source=source))
    for name, old_art in baseline["artifacts"].items():
        art = new["artifacts"].get(name)
        if art is None:
            result.rows.append(Row(name, "artifact", old_art["status"], "missing", "not in this run", "regression"))
            continue
        if art["status"] == "failed" and old_art["status"] != "failed":
            result.rows.append(Row(name, "artifact", old_art["status"], "failed", "failed in this run",
                                   "regression"))
            continue
        result.rows.append(_size_row(name, old_art, art, tol))
        result.rows += [r for key, metric in ACCURACY_METRICS
                        if (r := _accuracy_row(name, old_art, art, tol, key, metric)) is not None]
        timing = (timings or {}).get(name)
        if timing is not None or old_art.get("latency_ms"):
            result.rows.append(_latency_row(name, old_art, timing or NOT_TIMED, tol))
    for name, art in new["artifacts"].items():
        if name not in baseline["artifacts"]:
            result.rows.append(Row(name, "artifact", "—", art["status"], "not in the baseline", "new"))
    return result


GATE_HEADER = ["artifact", "metric", "old", "new", "change", "verdict"]


def gate_rows(result: GateResult) -> list[list[str]]:
    """The gate's table, one list of cells per row (``GATE_HEADER``)."""
    return [[r.artifact, r.metric, r.old, r.new, r.change, r.verdict] for r in result.rows]
