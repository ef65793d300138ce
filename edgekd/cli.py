"""The `edgekd` command line: run, validate, bench, profile, devices, zoo, report, baseline, check.

Exit codes (DESIGN.md): 0 success; 1 a budget, parity or regression check failed; 2 bad input (one line naming the
file, the key and what is expected; a traceback only with --debug); 3 an unexpected internal error; 130 interrupted.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from edgekd.errors import ArtifactsFailed, BudgetError, ConfigError, EdgekdError, UserError
from edgekd.runtimes import RUNTIME_SPECS, has_part, native_tools

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distil, prune, quantize, export and measure a PyTorch classifier for one edge device.")
# piped or captured output gets a fixed width so tables stay readable in logs and CI
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
out = Console(width=None if sys.stdout.isatty() else 140)

DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="device profile name (see `edgekd devices`) or YAML")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a recipe key: key.path=value")]
_debug = {"on": False}
"""Set by the ``--debug`` option of the command being run (as click parses it), read by :func:`main`."""


def _suffixes(part: str | None = None) -> str:
    """The artifact file suffixes of every runtime (that has module ``part``), in table order, for help texts."""
    found = [suffix for name, spec in RUNTIME_SPECS.items() if part is None or has_part(name, part)
             for suffix in spec.suffixes]
    return ", ".join(dict.fromkeys(found))


def _set_debug(value: bool) -> bool:
    _debug["on"] = value
    return value


DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks", callback=_set_debug, is_eager=True)]


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe name (see `edgekd zoo recipes`) or YAML file")],
    device: DeviceOpt,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="run directory (default runs/<recipe>-<device>-<time>)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="folder with data set files")] = None,
    overrides: SetOpt = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="every stage for real, with tiny budgets")] = False,
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", help="Ray cluster for independent sub-runs ('auto' or HOST:PORT; sets execution.address)")] = None,
    debug: DebugOpt = False,
) -> None:
    """Run every stage of RECIPE for DEVICE; finished stages are reused, interrupted ones resume."""
    from edgekd.bench.preflight import preflight, summary
    from edgekd.cli_views import print_summary
    from edgekd.config import load_device, load_recipe
    from edgekd.config.loader import resolve_device_path, resolve_recipe_path
    from edgekd.pipeline.runner import PipelineRunner

    recipe = resolve_recipe_path(str(recipe))
    spec = load_recipe(recipe, overrides or [])
    if ray_address is not None:
        spec.execution.address = ray_address
    target = load_device(device)
    device_file = resolve_device_path(device)
    run_dir = out_dir or Path("runs") / f"{spec.name}-{target.name}-{datetime.now():%Y%m%d-%H%M%S}"
    console.print(f"[bold]edgekd run[/bold] {recipe} on [bold]{target.name}[/bold] → {run_dir}"
                  + (" [yellow](smoke)[/yellow]" if smoke else ""))

    def checked_target() -> dict:
        record = preflight(target)  # the target reachable, with every runtime importable
        console.print(summary(record), highlight=False)
        if spec.bench is not None and spec.bench.fleet:  # and so is every device of the fleet, before any training
            from edgekd.bench.fleet import check_fleet

            for checked in check_fleet([load_device(name) for name in spec.bench.fleet]).values():
                console.print(summary(checked), highlight=False)
        return record

    runner = PipelineRunner(spec, target, run_dir, smoke=smoke, data_dir=data_dir, console=console,
                            recipe_file=str(recipe), overrides=overrides or [], preflight=checked_target)
    try:
        with naming_files(recipe, device_file):
            manifest = runner.run()
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]: run the same command with --out {run_dir} to resume")
        raise typer.Exit(130) from None
    from edgekd._distributed import is_main

    if not is_main():  # under torchrun, rank 0 reports for all
        return
    from edgekd.pipeline.manifest import Manifest

    typed = Manifest.model_validate(manifest)
    print_summary(out, typed, run_dir)
    failed = [(a.name, a.reason, a.info.get("exit_code", 1)) for a in typed.artifacts if a.status == "failed"]
    if failed:
        raise ArtifactsFailed(failed)
    budgets = {k: v for k, v in target.budgets.model_dump().items() if k != "latency_stat" and v is not None}
    selection = typed.selection or {}
    if spec.evaluate is not None and budgets and not selection.get("meets_budgets", False):
        if smoke:
            console.print("[yellow]smoke run: budgets are reported, not enforced[/yellow]")
            return
        message = ((selection.get("closest") or {}).get("message")
                   or f"no artifact meets the budgets of device {target.name} ({budgets})")
        raise BudgetError(f"{message}; see {run_dir}/report.md")


@contextmanager
def naming_files(recipe: Path, device: Path) -> Iterator[None]:
    """A stage check's ConfigError becomes one line that starts with the recipe's or the device profile's file."""
    try:
        yield
    except ConfigError as exc:
        raise UserError(f"{recipe if exc.where == 'recipe' else device}: {exc}") from None


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="recipe name (see `edgekd zoo recipes`) or YAML file")],
             device: DeviceOpt,
             data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="folder with data set files")] = None,
             overrides: SetOpt = None, debug: DebugOpt = False) -> None:
    """Check RECIPE and DEVICE (schemas, then every stage's own checks, which load the data set and build the
    models) and print the resolved plan, without running anything."""
    from edgekd.bench.preflight import preflight, summary
    from edgekd.cli_views import print_plan
    from edgekd.config import load_device, load_recipe
    from edgekd.config.loader import resolve_device_path, resolve_recipe_path
    from edgekd.pipeline.runner import load_recipe_data
    from edgekd.pipeline.stage import check_stages

    recipe = resolve_recipe_path(str(recipe))
    spec, target = load_recipe(recipe, overrides or []), load_device(device)
    with naming_files(recipe, resolve_device_path(device)):
        check_stages(spec, target, functools.cache(lambda: load_recipe_data(spec, data_dir, smoke=False)))
    checked = preflight(target)
    fleet = {}
    if spec.bench is not None and spec.bench.fleet:
        from edgekd.bench.fleet import check_fleet

        fleet = check_fleet([load_device(name) for name in spec.bench.fleet])
    print_plan(out, spec, target)
    for record in (checked, *fleet.values()):
        out.print(summary(record), highlight=False)


@app.command()
def bench(
    artifact: Annotated[Path, typer.Argument(help=f"an artifact file ({_suffixes()}), in a run folder or not")],
    devices: Annotated[list[str], typer.Option(
        "--device", "-d", help="device profile name (see `edgekd devices`) or YAML; repeat it to time a fleet: every "
        "device is pre-flighted first, then remote (ssh/adb) devices are timed in parallel and local ones one after "
        "another")],
    runs: Annotated[int, typer.Option("--runs", min=1, help="timed calls (at least)")] = 200,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="untimed calls first")] = 20,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, help="time at least this long")] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="batch of a timed call")] = 1,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="runtime (default: from the run or suffix)")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="precision (default: from the run or graph)")] = None,
    compare_native: Annotated[bool, typer.Option(
        "--compare-native", help=f"also time it with its runtime's own benchmark tool ({', '.join(native_tools().values())})")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the figures to this JSON file")] = None,
    backend: Annotated[str, typer.Option(
        "--backend", help="how a fleet's devices are scheduled: auto (Ray when installed), ray, sequential")] = "auto",
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", help="Ray cluster for a fleet's device tasks ('auto' or HOST:PORT)")] = None,
    debug: DebugOpt = False,
) -> None:
    """Measure one ARTIFACT on each DEVICE (locally, over ssh or over adb), outside a run: one table per device."""
    from edgekd.cli_bench import bench_command
    from edgekd.config import ExecutionConfig

    try:
        execution = ExecutionConfig.model_validate({"backend": backend, "address": ray_address})
    except ValueError:
        raise UserError(f"--backend {backend!r}: expected auto, ray or sequential") from None
    bench_command(out, artifact, devices, runs=runs, warmup=warmup, min_seconds=min_seconds, batch_size=batch_size,
                  runtime=runtime, precision=precision, compare_native=compare_native, json_out=json_out,
                  execution=execution)


@app.command()
def profile(
    artifact: Annotated[Path, typer.Argument(help=f"an artifact file ({_suffixes('profile')})")],
    device: DeviceOpt,
    against: Annotated[Optional[Path], typer.Option("--against", help="another artifact of the same model to diff")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="rows shown")] = 15,
    runs: Annotated[int, typer.Option("--runs", min=1, help="profiled inferences (averaged)")] = 100,
    runtime: Annotated[Optional[str], typer.Option("--runtime", help="runtime (default: from the run or suffix)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write every row to this JSON file")] = None,
    debug: DebugOpt = False,
) -> None:
    """Per-layer times of ARTIFACT from its runtime's profiler; --against diffs two artifacts layer by layer."""
    from edgekd.cli_bench import profile_command

    profile_command(out, artifact, device, against=against, top=top, runs=runs, runtime=runtime, json_out=json_out)


@app.command()
def devices(debug: DebugOpt = False) -> None:
    """List the device profiles."""
    from edgekd.cli_views import print_devices

    print_devices(out)


@app.command()
def zoo(
    kind: Annotated[str, typer.Argument(help="models, losses, datasets, runtimes, stages or recipes")] = "all",
    debug: DebugOpt = False,
) -> None:
    """List what recipes can name (models, distillation losses, data sets, runtimes, stages) and the recipes."""
    from edgekd.cli_views import ZOO_VIEWS

    if kind != "all" and kind not in ZOO_VIEWS:
        raise UserError(f"zoo: unknown kind {kind!r}; choose one of all, {', '.join(ZOO_VIEWS)}")
    for name, view in ZOO_VIEWS.items():
        if kind in ("all", name):
            view(out)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")], debug: DebugOpt = False) -> None:
    """Print the summary of a finished run (the report files are in the run directory)."""
    from edgekd.cli_views import print_summary
    from edgekd.pipeline.manifest import read_manifest

    print_summary(out, read_manifest(run_dir), run_dir)


RoundsOpt = Annotated[int, typer.Option("--rounds", help="interleaved blocks of 20 timed calls per latency series",
                                         min=1)]


@app.command()
def baseline(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
    output: Annotated[Path, typer.Option("--output", "-o", help="baseline file to write (commit it)")],
    rounds: RoundsOpt = 20,
    keep_artifacts: Annotated[bool, typer.Option(
        "--keep-artifacts", help="also copy the artifacts next to the baseline (<stem>-artifacts/), for `check` to "
        "time them beside the candidate")] = False,
    debug: DebugOpt = False,
) -> None:
    """Store RUN's sizes, accuracies and latencies (timed beside a machine reference) as a baseline for `check`."""
    from edgekd.cli_gate import baseline_command

    baseline_command(console, run_dir, output, rounds=rounds, keep_artifacts=keep_artifacts)


@app.command()
def check(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
    baseline_file: Annotated[Path, typer.Option("--baseline", "-b", help="baseline file of `edgekd baseline`")],
    size_tol: Annotated[int, typer.Option("--size-tol", help="bytes an artifact may grow", min=0)] = 0,
    accuracy_tol: Annotated[float, typer.Option("--accuracy-tol", help="accuracy points it may drop", min=0)] = 0.5,
    latency_tol: Annotated[float, typer.Option("--latency-tol", help="percent it may slow down (whole CI beyond)",
                                               min=0)] = 10.0,
    baseline_run: Annotated[Optional[Path], typer.Option(
        "--baseline-run", help="the run the baseline was made from: time its artifacts beside this run's")] = None,
    cross_machine: Annotated[bool, typer.Option(
        "--cross-machine", help="compare with a baseline from another CPU model or flags")] = False,
    rounds: RoundsOpt = 20,
    fmt: Annotated[str, typer.Option("--format", help="text, or md for a pull-request comment")] = "text",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the gate's rows as JSON")] = None,
    debug: DebugOpt = False,
) -> None:
    """Compare RUN with a baseline: exit 1 on a size, accuracy or latency regression, 0 otherwise."""
    from edgekd._atomic import atomic_write_json
    from edgekd.bench.gate import Tolerances
    from edgekd.cli_gate import check_command
    from edgekd.cli_views import gate_markdown, print_gate

    if fmt not in ("text", "md"):
        raise UserError(f"check: --format {fmt!r}; choose text or md")
    result = check_command(run_dir, baseline_file,
                           Tolerances(size_bytes=size_tol, accuracy_points=accuracy_tol, latency_pct=latency_tol),
                           baseline_run=baseline_run, cross_machine=cross_machine, rounds=rounds)
    if fmt == "md":
        print(gate_markdown(result))
    else:
        print_gate(out, result)
    if json_out is not None:
        atomic_write_json(json_out, result.to_dict())
    if not result.passed:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command, turn edgekd errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    _debug["on"] = False
    try:
        app(args=args, prog_name="edgekd")  # standalone mode: usage errors exit 2, always ends in SystemExit
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except EdgekdError as exc:
        if _debug["on"]:
            raise
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        code = exc.exit_code
    except Exception as exc:  # an internal error: say so in one line, with the way to see more
        if _debug["on"]:
            raise
        console.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                      highlight=False, soft_wrap=True)
        code = 3
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
