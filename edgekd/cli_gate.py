"""The ``edgekd baseline`` and ``edgekd check`` commands: the CI gate's measurements around :mod:`edgekd.bench.gate`.

``baseline`` times every local ONNX Runtime and OpenVINO artifact of a run beside the machine reference and stores
the samples with the CPU's identity; with ``--keep-artifacts`` it also copies the artifacts' files into a folder next
to the baseline file (``<baseline stem>-artifacts/``, at their paths inside the run), for repositories where they
are small enough to commit. ``check`` then judges latency in one of two ways (:mod:`edgekd.bench.gate_latency`):

- the baseline's artifacts at hand (``--baseline-run DIR``, or the kept folder next to the baseline): each is
  verified against the baseline's SHA-256 and timed interleaved with the candidate in this process;
- only the baseline's numbers: the candidate is timed beside the machine reference, and its ratio is divided by the
  reference's; a baseline from another CPU model or instruction-set flags is refused (exit 2) unless
  ``--cross-machine`` asks for the comparison anyway.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from edgekd._atomic import atomic_write_json
from edgekd.bench.gate import GateResult, Tolerances, check_comparable, compare, load_baseline, snapshot
from edgekd.bench.gate_latency import ReferenceTiming, SessionTiming, Timing, Unjudged
from edgekd.bench.reference import REFERENCE_RUNTIMES
from edgekd.bench.retime import BLOCK
from edgekd.errors import UserError
from edgekd.pipeline.hashing import combined_sha256
from edgekd.pipeline.manifest import load_manifest

#: runtimes whose artifacts the gate re-times on this machine (those that can run the machine reference)
RETIMED_RUNTIMES = REFERENCE_RUNTIMES


def kept_artifacts_dir(baseline_file: Path) -> Path:
    """Where ``edgekd baseline --keep-artifacts`` puts the artifacts' files: ``<stem>-artifacts/`` beside it."""
    return baseline_file.with_name(f"{baseline_file.stem}-artifacts")


def _local(run_dir: Path) -> bool:
    """Whether the run measured on this machine (its device profile's access is local)."""
    try:
        device = json.loads((run_dir / "device.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return True
    return (device.get("access") or {}).get("kind", "local") == "local"


def _timeable(art: dict[str, Any], runtimes: tuple[str, ...]) -> bool:
    return art.get("status", "ok") == "ok" and art["runtime"] in runtimes and bool(art.get("path"))


def _batch(art: dict[str, Any], batch_size: int | None) -> Any:
    from edgekd.bench.retime import input_batch

    return input_batch(art["input"]["shape"][1:], batch_size or 1)


def _reference_sessions(run_dir: Path, manifest: dict[str, Any], rounds: int) -> dict[str, dict[str, Any]]:
    from edgekd.bench.retime import runner_options_of, time_with_reference

    sessions = {}
    for art in manifest["artifacts"]:
        if not _timeable(art, REFERENCE_RUNTIMES):
            continue
        metrics = art.get("metrics", {})
        options = runner_options_of(art["runtime"], metrics.get("compute") or {})
        samples, reference = time_with_reference(art["runtime"], run_dir / art["path"], options,
                                                 _batch(art, metrics.get("batch_size")), rounds=rounds)
        sessions[art["name"]] = {"samples_ms": samples, "reference_ms": reference, "rounds": rounds,
                                 "block": BLOCK, "options": options}
    return sessions


def baseline_command(console: Console, run_dir: Path, output: Path, *, rounds: int, keep_artifacts: bool) -> None:
    """Write the baseline of ``run_dir`` to ``output`` (see the module docstring)."""
    from edgekd.bench.reference import REFERENCE_NAME, machine_identity, reference_digest

    manifest = load_manifest(run_dir)
    local = _local(run_dir)
    sessions = _reference_sessions(run_dir, manifest, rounds) if local else {}
    data = snapshot(manifest, sessions=sessions, machine=machine_identity() if local else None,
                    reference={"name": REFERENCE_NAME, "sha256": reference_digest()} if local else None)
    if keep_artifacts:
        _keep(run_dir, manifest, kept_artifacts_dir(output), console)
    atomic_write_json(output, data)
    chosen = (f", deployed {data['selected']} chosen on the {data['selected_by'] or 'test'} split"
              if data["selected"] else "")
    console.print(f"baseline of {data['recipe']} on {data['device']} ({len(data['artifacts'])} artifacts, "
                  f"{len(sessions)} timed beside the machine reference{chosen}) → {output}")
    if not local:
        console.print(f"{data['device']} is not this machine: latencies are not timed for the gate (give "
                      "`edgekd check --baseline-run` a copy of this run to compare them in one session)")


def _keep(run_dir: Path, manifest: dict[str, Any], folder: Path, console: Console) -> None:
    total = 0
    for art in manifest["artifacts"]:
        if not _timeable(art, RETIMED_RUNTIMES):
            continue
        for f in art.get("files") or [{"path": art["path"], "bytes": art["bytes"]}]:
            target = folder / f["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / f["path"], target)
            total += int(f["bytes"])
    console.print(f"kept the artifacts' files ({total / 2**20:.2f} MiB) in {folder}")


def _old_artifact(old: dict[str, Any], name: str, old_dir: Path) -> tuple[Path, str, str] | None:
    """The baseline's artifact ``name`` in ``old_dir``: its path, the digest the baseline stores and the digest of the
    file there. A version-1 baseline stores no path: the folder's manifest gives it, and the main file's SHA-256 is
    compared (version 1 has no combined digest)."""
    from edgekd.pipeline.hashing import sha256_file

    relative = old.get("path")
    if relative is None:
        try:
            listed = load_manifest(old_dir)["artifacts"]
        except UserError:
            return None
        relative = next((a["path"] for a in listed if a["name"] == name), None)
        if relative is None:
            return None
    path = old_dir / relative
    if not path.exists():
        raise UserError(f"{old_dir}: {relative} not found; give --baseline-run the run the baseline was made from")
    if "combined_sha256" in old:
        return path, old["combined_sha256"], combined_sha256(path)
    return path, old["sha256"], sha256_file(path)


def _session_timings(base: dict[str, Any], old_dir: Path, run_dir: Path, manifest: dict[str, Any],
                     rounds: int) -> dict[str, Timing]:
    from edgekd.bench.retime import runner_options_of, time_side_by_side

    timings: dict[str, Timing] = {}
    for art in manifest["artifacts"]:
        old = base["artifacts"].get(art["name"])
        if old is None or old.get("status", "ok") != "ok":
            continue
        if not _timeable(art, RETIMED_RUNTIMES):
            timings[art["name"]] = Unjudged(f"not timed: the gate times {' and '.join(RETIMED_RUNTIMES)} artifacts")
            continue
        found = _old_artifact(old, art["name"], old_dir)
        if found is None:
            timings[art["name"]] = Unjudged(f"not in {old_dir}")
            continue
        old_path, expected, digest = found
        if digest != expected:
            raise UserError(f"{old_path}: not the artifact {art['name']} of the baseline (sha256 {digest[:12]}…, "
                            f"baseline {expected[:12]}…); give the run the baseline was made from, or re-baseline")
        metrics = art.get("metrics", {})
        options = runner_options_of(art["runtime"], metrics.get("compute") or {})
        old_ms, new_ms = time_side_by_side(art["runtime"], old_path, run_dir / art["path"], options,
                                           _batch(art, metrics.get("batch_size")), rounds=rounds)
        timings[art["name"]] = SessionTiming(old_ms, new_ms, BLOCK)
    return timings


def _reference_timings(base: dict[str, Any], source: str, run_dir: Path, manifest: dict[str, Any], rounds: int,
                       cross_machine: bool, notes: list[str]) -> dict[str, Timing]:
    from edgekd.bench.reference import machine_difference, machine_identity, reference_digest

    names = [a["name"] for a in manifest["artifacts"] if a["name"] in base["artifacts"]]
    if base.get("version") == 1:
        return {n: Unjudged("version-1 baseline: no machine reference (see the note)") for n in names}
    if base.get("machine") is None or not _local(run_dir):
        return {n: Unjudged("not measured on this machine; give --baseline-run a copy of the baseline's run")
                for n in names}
    difference = machine_difference(base["machine"], machine_identity())
    if difference and not cross_machine:
        raise UserError(f"{source}: {difference}; one machine ratio cannot normalise latencies of two CPUs. "
                        "Re-baseline on this machine, give --baseline-run OLD_RUN to time both runs here, or "
                        "--cross-machine to compare anyway")
    if difference:
        notes.append(f"cross-machine comparison (--cross-machine): {difference}; the machine ratio assumes every "
                     "model changes speed by the reference's factor, which another CPU need not do")
    if (base.get("reference") or {}).get("sha256") != reference_digest():
        return {n: Unjudged("the baseline timed another reference workload; re-baseline with this edgekd")
                for n in names}
    sessions = _reference_sessions(run_dir, manifest, rounds)
    timings: dict[str, Timing] = {}
    for name in names:
        old_session = base["artifacts"][name].get("session")
        if old_session is None:
            timings[name] = Unjudged("no latency timed in the baseline for this artifact")
        elif name in sessions:
            timings[name] = ReferenceTiming(sessions[name]["samples_ms"], sessions[name]["reference_ms"], BLOCK)
    return timings


def check_command(run_dir: Path, baseline_file: Path, tol: Tolerances, *, baseline_run: Path | None,
                  cross_machine: bool, rounds: int) -> GateResult:
    """The gate of ``run_dir`` against ``baseline_file`` (see the module docstring)."""
    base = load_baseline(baseline_file)
    manifest = load_manifest(run_dir)
    source = str(baseline_file)
    check_comparable(base, snapshot(manifest), source)
    kept = kept_artifacts_dir(baseline_file)
    old_dir = baseline_run if baseline_run is not None else kept if kept.is_dir() else None
    notes: list[str] = []
    if old_dir is not None:
        if not old_dir.is_dir():
            raise UserError(f"--baseline-run {old_dir}: not a directory")
        timings = _session_timings(base, old_dir, run_dir, manifest, rounds)
        notes.append(f"latency: the baseline's artifacts ({old_dir}) and this run's timed interleaved in this session")
    else:
        timings = _reference_timings(base, source, run_dir, manifest, rounds, cross_machine, notes)
    result = compare(base, manifest, tol, source=source, timings=timings)
    result.notes += notes
    return result
