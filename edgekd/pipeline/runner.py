"""The stage runner: runs the recipe's stages in order, caches finished ones, resumes interrupted ones.

Cache key of a stage (DVC/Olive style) = SHA-256 of: the stage name, its resolved config, the recipe seed and data
config, the fingerprints of what it read from earlier stages through its context (each artifact or record by digest,
:mod:`edgekd.pipeline.context`), the edgekd version and the versions of the libraries the stage declares. A stage is
``cached`` when its config, seed/data, edgekd and library versions are unchanged, everything it read last time still
has the same fingerprint, and its outputs are intact; otherwise the reason it re-runs is logged and recorded. A stage
that was interrupted (Ctrl-C, kill -9) keeps its folder when nothing upstream changed, so a training stage resumes
from its last epoch checkpoint.

Under ``torchrun`` (several ranks) rank 0 decides, runs and records every stage and alone writes files; stages that
declare ``distributed = True`` (the training stages) are run by every rank together, the others by rank 0 while the
rest wait at a barrier. After each stage the other ranks read the record rank 0 wrote, so they see its artifacts.

A run holds the run directory's lock (:mod:`edgekd.pipeline.lock`) from start to end, so two runs never write the
same folder.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from edgekd import __version__
from edgekd import _distributed as dist
from edgekd._atomic import atomic_write_json, atomic_write_text
from edgekd.config import Device, Recipe
from edgekd.pipeline.artifacts import Artifact
from edgekd.pipeline.context import ALL_ARTIFACTS, ALL_RECORDS, SMOKE_SUBSET, StageContext, fingerprint
from edgekd.pipeline.hashing import describe_output, output_change, sha256_json
from edgekd.pipeline.lock import run_dir_lock
from edgekd.pipeline.manifest import read_json, read_stage_record, write_manifest, write_stage_record
from edgekd.pipeline.provenance import git_commit, host_info, library_versions
from edgekd.pipeline.stage import Stage, StageResult, check_stages, ordered_stages

STAGE_RECORD = "stage.json"
ATTEMPT_KEY = ".key"


def load_recipe_data(recipe: Recipe, data_dir: Path | None, smoke: bool) -> Any:
    """The recipe's data set with its seeded splits, cut to the smoke subsets in a smoke run."""
    from edgekd.data import load_dataset

    cfg = recipe.data
    bundle = load_dataset(cfg.name, cfg.params, data_dir=data_dir, val_fraction=cfg.val_fraction, seed=recipe.seed)
    if smoke:
        n_train, n_val, n_test = SMOKE_SUBSET
        bundle = replace(bundle, train=bundle.train.subset(n_train, recipe.seed),
                         val=bundle.val.subset(n_val, recipe.seed), test=bundle.test.subset(n_test, recipe.seed))
    return bundle


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PipelineRunner:
    """Runs one recipe for one device into one run directory.

    ``preflight`` (optional) checks the device's target: it is called once, after the stages' own checks and before
    the run directory is written or any stage runs; what it returns is kept as the manifest's ``preflight``, and what
    it raises ends the run there.
    """

    def __init__(
        self,
        recipe: Recipe,
        device: Device,
        run_dir: Path,
        *,
        smoke: bool = False,
        data_dir: Path | None = None,
        console: Console | None = None,
        recipe_file: str = "",
        overrides: list[str] | None = None,
        preflight: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.recipe = recipe
        self.device = device
        self.run_dir = run_dir
        self.smoke = smoke
        self.data_dir = data_dir
        self.console = console or Console(stderr=True)
        self.recipe_file = recipe_file
        self.overrides = overrides or []
        self.preflight = preflight
        self._preflight_record: dict[str, Any] | None = None
        self._bundle: Any = None
        self._libraries = library_versions()
        self.manifest: dict[str, Any] = {}

    # -- data ---------------------------------------------------------------------------------------------------
    def _load_data(self) -> Any:
        if self._bundle is None:
            self._bundle = load_recipe_data(self.recipe, self.data_dir, self.smoke)
        return self._bundle

    # -- keys and records -----------------------------------------------------------------------------------------
    def _base_parts(self, stage: Stage) -> dict[str, Any]:
        """What a stage's key holds besides its reads."""
        return {
            "stage": stage.name,
            "config": sha256_json(stage.config(self.recipe, self.device, self.smoke)),
            "common": sha256_json(
                {"seed": self.recipe.seed, "data": self.recipe.data.model_dump(mode="json"), "smoke": self.smoke}
            ),
            "version": __version__,
            "libraries": {name: self._libraries.get(name) for name in stage.libraries},
        }

    def _fingerprints(self, keys: Any, records: dict[str, dict[str, Any]]) -> dict[str, str | None]:
        """What each read key sees now (artifacts as merged so far, records of the stages run so far)."""
        artifacts = {a["name"]: Artifact.from_dict(a).to_dict() for a in self.manifest["artifacts"]}
        return {key: fingerprint(key, artifacts, records) for key in keys}

    def _attempt_key(self, base: dict[str, Any], records: dict[str, dict[str, Any]]) -> str:
        """Key of an attempt, before its reads are known: everything upstream, so a resumed attempt saw the same."""
        return sha256_json({**base, "upstream": self._fingerprints([ALL_ARTIFACTS, ALL_RECORDS], records)})

    def _stale_reason(self, previous: dict[str, Any] | None, base: dict[str, Any],
                      records: dict[str, dict[str, Any]]) -> str | None:
        """Why a stage must run (None: it is cached). Cheapest checks first."""
        if previous is None:
            return "never ran"
        if previous.get("status") != "done":
            return "did not finish last time"
        old = previous["key_parts"]
        if old["version"] != base["version"]:
            return f"edgekd version changed ({old['version']} -> {base['version']})"
        if "reads" not in old:
            return "recorded by an older edgekd"
        if old["libraries"] != base["libraries"]:
            changed = sorted(k for k in base["libraries"] if base["libraries"][k] != old["libraries"].get(k))
            return f"libraries changed: {', '.join(changed)}"
        if old["config"] != base["config"]:
            return "stage config changed"
        if old["common"] != base["common"]:
            return "seed, data or smoke setting changed"
        now = self._fingerprints(old["reads"], records)
        changed = [key for key, digest in old["reads"].items() if now[key] != digest]
        if changed:
            return f"input changed: {', '.join(changed)}"
        for output in [*previous["artifacts"], *previous["files"]]:
            if (change := output_change(self.run_dir, output)) is not None:
                return change
        return None

    # -- manifest -------------------------------------------------------------------------------------------------
    def _start_manifest(self) -> None:
        self.manifest = {
            "recipe": self.recipe.name,
            "recipe_file": self.recipe_file,
            "device": self.device.name,
            "edgekd_version": __version__,
            "created": _now(),
            "updated": _now(),
            "smoke": self.smoke,
            "seed": self.recipe.seed,
            "overrides": self.overrides,
            "provenance": {"libraries": self._libraries, "host": host_info(), "git_commit": git_commit(),
                           "processes": dist.world().world_size},
            "preflight": self._preflight_record,
            "budgets": self.device.budgets.model_dump(mode="json"),
            "current_stage": None,
            "stages": [],
            "artifacts": [],
            "selected": None,
        }

    def _write_manifest(self) -> None:
        self.manifest["updated"] = _now()
        write_manifest(self.run_dir, self.manifest)

    def _merge(self, record: dict[str, Any]) -> None:
        """Add a finished stage's artifacts, metrics and top-level fields to the manifest."""
        artifacts = {a["name"]: a for a in self.manifest["artifacts"]}
        for art in record["artifacts"]:
            artifacts[art["name"]] = dict(art)
        for name, metrics in record["metrics"].items():
            if name in artifacts:
                artifacts[name]["metrics"] = {**artifacts[name]["metrics"], **metrics}
        for name, failed in record.get("failures", {}).items():  # a later stage failed on an earlier artifact
            if name in artifacts:
                artifacts[name] = {**artifacts[name], "status": "failed", "reason": failed["reason"],
                                   "info": {**artifacts[name]["info"], "exit_code": failed["exit_code"]}}
        self.manifest["artifacts"] = list(artifacts.values())
        self.manifest.update(record.get("manifest", {}))

    # -- running --------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run every enabled stage; return the final manifest. Stage exceptions propagate after being recorded."""
        created = dist.init_process_group()  # under torchrun: join the other ranks (no-op otherwise)
        try:
            with run_dir_lock(self.run_dir):  # one writer per run directory (a second run exits 2 at once)
                return self._run_all()
        finally:
            if created:
                dist.destroy_process_group()

    def _run_all(self) -> dict[str, Any]:
        check_stages(self.recipe, self.device, self._load_data)  # every mistake found before any work
        main = dist.is_main()
        if main and self.preflight is not None:  # then the target itself, still before any stage
            self._preflight_record = self.preflight()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "logs").mkdir(exist_ok=True)
            atomic_write_json(self.run_dir / "recipe.json", self.recipe.model_dump(mode="json"))
            atomic_write_json(self.run_dir / "device.json", self.device.model_dump(mode="json"))
        self._start_manifest()
        records: dict[str, dict[str, Any]] = {}
        for stage in ordered_stages():
            if not stage.enabled(self.recipe, self.device):
                self.manifest["stages"].append(
                    {"name": stage.name, "status": "skipped", "seconds": 0.0, "reason": "not in the recipe"}
                )
                continue
            records[stage.name] = self._run_stage(stage, records) if main else self._follow_stage(stage, records)
        self.manifest["current_stage"] = None
        if main:
            self._write_manifest()
        dist.barrier()
        return self.manifest if main else read_json(self.run_dir / "manifest.json") or self.manifest

    def _context(self, stage_dir: Path, records: dict[str, dict[str, Any]], *, follower: bool = False
                 ) -> StageContext:
        """What a stage sees; a follower rank (not rank 0) gets a silent console and no log file."""
        return StageContext(
            run_dir=self.run_dir,
            stage_dir=stage_dir,
            recipe=self.recipe,
            device=self.device,
            smoke=self.smoke,
            data_dir=self.data_dir,
            console=Console(quiet=True) if follower else self.console,
            available=[Artifact.from_dict(a) for a in self.manifest["artifacts"]],
            load_data=self._load_data,
            log_file=None if follower else self.run_dir / "logs" / "run.log",
            earlier_records=dict(records),
        )

    def _follow_stage(self, stage: Stage, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A non-main rank: join the stage if rank 0 runs it and it is distributed, then take rank 0's record."""
        stage_dir = self.run_dir / stage.name
        if dist.broadcast_flag(False):
            stage.run(self._context(stage_dir, records, follower=True))
        dist.barrier()
        record = read_stage_record(stage_dir / STAGE_RECORD)
        if record is None:
            raise RuntimeError(f"rank {dist.world().rank}: rank 0 left no record of stage {stage.name}")
        self._merge(record)
        return record

    def _run_stage(self, stage: Stage, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        stage_dir = self.run_dir / stage.name
        base = self._base_parts(stage)
        key = self._attempt_key(base, records)
        previous = read_stage_record(stage_dir / STAGE_RECORD)
        reason = self._stale_reason(previous, base, records)
        if reason is None and previous is not None:
            dist.broadcast_flag(False)  # the other ranks do not run it ...
            self.console.print(f"[green]✓[/green] {stage.name} [dim](cached)[/dim]")
            self._merge(previous)
            self.manifest["stages"].append({"name": stage.name, "status": "cached", "seconds": 0.0,
                                            "reason": "inputs and config unchanged", "info": previous["info"]})
            self._write_manifest()
            dist.barrier()  # ... and read its record once we get here
            return previous

        attempt = stage_dir / ATTEMPT_KEY
        resuming = attempt.is_file() and attempt.read_text().strip() == key
        if not resuming and stage_dir.exists():
            shutil.rmtree(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / STAGE_RECORD).unlink(missing_ok=True)
        atomic_write_text(attempt, key + "\n")
        if resuming:
            reason = f"{reason}; resuming the interrupted attempt"
        self.console.print(f"[bold cyan]▶ {stage.name}[/bold cyan] [dim]({reason})[/dim]")
        self.manifest["current_stage"] = stage.name
        self._write_manifest()
        dist.broadcast_flag(stage.distributed)  # the stage folder is ready: distributed stages start on every rank

        ctx = self._context(stage_dir, records)
        start = time.perf_counter()
        try:
            with nullcontext() if stage.distributed else dist.solo():  # rank 0 alone: no collectives inside
                result = stage.run(ctx)
        except BaseException as exc:
            seconds = round(time.perf_counter() - start, 3)
            error = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            self.manifest["stages"].append(
                {"name": stage.name, "status": "failed", "seconds": seconds, "reason": reason, "error": error}
            )
            self.manifest["current_stage"] = None
            self._write_manifest()
            raise
        seconds = round(time.perf_counter() - start, 3)
        record = self._record(stage, result, {**base, "reads": dict(sorted(ctx.reads.items()))}, key, seconds)
        write_stage_record(stage_dir / STAGE_RECORD, record)
        self._merge(record)
        self.manifest["stages"].append(
            {"name": stage.name, "status": "done", "seconds": seconds, "reason": reason, "info": record["info"]}
        )
        self._write_manifest()
        self.console.print(f"[green]✓[/green] {stage.name} [dim]({seconds:.1f} s)[/dim]")
        dist.barrier()  # the record is on disk: the other ranks read it
        return record

    def _record(
        self, stage: Stage, result: StageResult, parts: dict[str, Any], key: str, seconds: float
    ) -> dict[str, Any]:
        for art in result.artifacts:
            art.smoke = self.smoke
        outputs = {
            "artifacts": [a.to_dict() for a in result.artifacts],
            "metrics": result.metrics,
            "failures": result.failures,
            "manifest": result.manifest,
            "files": [{"path": str(f.relative_to(self.run_dir)), **describe_output(self.run_dir, f)}
                      for f in result.files],
        }
        return {
            "name": stage.name,
            "status": "done",
            "key": key,
            "key_parts": parts,
            "seconds": seconds,
            "finished": _now(),
            "info": result.info,
            "outputs_digest": sha256_json(outputs),
            **outputs,
        }
