"""What the command line prints: run summary, resolved plan, device list, zoo tables (rich)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekd.bench.gate import GATE_HEADER, GateResult, gate_rows
from edgekd.config import Device, Recipe
from edgekd.pipeline.manifest import Manifest
from edgekd.report.tables import SUMMARY_HEADER, markdown_table, si, summary_rows


def _table(title: str, header: list[str], rows: list[list[str]], *, no_wrap: tuple[int, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(header):
        table.add_column(column, no_wrap=index in no_wrap)
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(out: Console, manifest: Manifest, run_dir: Path) -> None:
    """Teacher vs student table, the selected artifact, and where the report is."""
    rows = summary_rows(manifest)
    selected = manifest.selected
    for row in rows:
        if row[1] == selected:
            row[1] = f"[bold green]{row[1]} ✓[/bold green]"
        elif row[1].endswith("✗ failed"):
            row[1] = f"[red]{row[1]}[/red]"
    # an artifact's name and its ✓ / ✗ failed mark stay on one line
    out.print(_table(f"{manifest.recipe} on {manifest.device}" + (" (smoke)" if manifest.smoke else ""),
                     SUMMARY_HEADER, rows, no_wrap=(1,)))
    stages = ", ".join(f"{s.name} {s.status}" for s in manifest.stages if s.status != "skipped")
    out.print(f"stages: {stages}")
    for art in manifest.artifacts:
        if art.status == "failed":
            out.print(f"[red]failed[/red]: {art.name}: {art.reason}", highlight=False)
    selection = manifest.selection or {}
    shown = selected
    if shown and not selection.get("meets_budgets", True):
        shown += " (smoke run: it does not meet the budgets, which are not enforced)"
    out.print(f"selected: {shown or 'none (no artifact meets the budgets)'}")
    if selection.get("reason"):
        out.print(f"[dim]why: {selection['reason']}[/dim]", highlight=False)
    deploy = run_dir / "deploy"
    if selected and deploy.is_dir():
        out.print(f"deploy: {deploy} (model, MODEL_CARD.md, model_card.json"
                  + (", predict.py with edgekd_session.py)" if (deploy / "predict.py").exists() else ")"))
    report = run_dir / "report.md"
    out.print(f"report: {report if report.exists() else '(no report stage)'}")


VERDICT_STYLE = {"regression": "bold red", "improved": "green", "new": "cyan", "not judged": "yellow", "ok": ""}


def print_gate(out: Console, result: GateResult) -> None:
    """The gate's table (old / new / change / verdict per artifact and metric) and its one-line summary."""
    table = Table(title=result.summary(), title_justify="left", header_style="bold")
    for column in GATE_HEADER:
        table.add_column(column)
    for row, cells in zip(result.rows, gate_rows(result)):
        style = VERDICT_STYLE.get(row.verdict, "")
        table.add_row(*cells[:-1], f"[{style}]{cells[-1]}[/{style}]" if style else cells[-1])
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False, markup=False)


def gate_markdown(result: GateResult) -> str:
    """The gate as markdown for a pull-request comment: a verdict line and the table."""
    mark = "✅" if result.passed else "❌"
    notes = "".join(f"\n> {note}\n" for note in result.notes)
    return f"{mark} **{result.summary()}**\n\n{markdown_table(GATE_HEADER, gate_rows(result))}\n{notes}"


def print_plan(out: Console, recipe: Recipe, device: Device) -> None:
    """The stages that would run, with their key settings, for ``recipe`` on ``device``."""
    from rich.markup import escape

    from edgekd.pipeline.stage import ordered_stages

    out.print(f"[bold]{escape(recipe.name)}[/bold] on [bold]{escape(device.name)}[/bold]: recipe and device profile "
              f"are valid.")
    out.print(escape(f"data: {recipe.data.name} {recipe.data.params or ''} (validation "
                     f"{recipe.data.val_fraction:.0%} of train), seed {recipe.seed}"))
    rows = []
    for stage in ordered_stages():
        enabled = stage.enabled(recipe, device)
        lines = stage.plan(recipe, device) if enabled else []
        rows.append([stage.name, "run" if enabled else "skip", escape("\n".join([stage.description, *lines]))])
    out.print(_table("stages", ["stage", "plan", "what it does / will build"], rows))
    budgets = {k: v for k, v in device.budgets.model_dump().items() if v is not None}
    out.print(escape(f"budgets: {budgets}"))


def print_devices(out: Console) -> None:
    """Every device profile found, with its runtimes and budgets."""
    from edgekd.config import available_devices, load_device

    rows = []
    for name, path in available_devices().items():
        device = load_device(str(path))
        runtimes = "; ".join(f"{r.runtime} {'/'.join(r.precisions)}" for r in device.runtimes)
        budgets = ", ".join(f"{k}={v}" for k, v in device.budgets.model_dump().items()
                            if v is not None and k != "latency_stat")
        rows.append([name, device.access.kind, runtimes, budgets or "—", device.description])
    out.print(_table("device profiles", ["name", "access", "runtimes", "budgets", "description"], rows))


ZOO_INPUT_SIZES = (32, 224)
"""Input sizes (3-channel, square) at which `edgekd zoo models` counts MACs, each with the layout chosen for it."""


def print_models(out: Console) -> None:
    import torch

    from edgekd.models import MODELS, count_macs, count_parameters, create, layout_kwargs, model_info

    rows = []
    for name in MODELS.names():
        info = model_info(name)
        with torch.device("meta"):  # shapes only: no weights are initialised, nothing is computed
            params = count_parameters(create(name))
            macs = [count_macs(create(name, **layout_kwargs(name, (s, s))), (3, s, s)) for s in ZOO_INPUT_SIZES]
        rows.append([name, info["family"], si(params, ""), *(si(m, "") for m in macs), info["paper"],
                     ", ".join(info["default_taps"])])
    header = ["name", "family", "params (10 classes)", *(f"MACs @3×{s}×{s}" for s in ZOO_INPUT_SIZES), "paper",
              "default taps"]
    out.print(_table("models (edgekd.models.create)", header, rows))


def print_losses(out: Console) -> None:
    from edgekd.distill.losses import LOSSES, loss_info

    rows = []
    for name in LOSSES.names():
        info = loss_info(name)
        defaults = ", ".join(f"{h['name']}={h['default']}" for h in info["hparams"])
        rows.append([name, info["kind"], info["paper"], defaults])
    out.print(_table("distillation losses (edgekd.distill.losses.create)", ["name", "kind", "paper", "defaults"],
                     rows))


def print_datasets(out: Console) -> None:
    from edgekd.data import DATASETS, dataset_params_model

    rows = []
    for entry in DATASETS.entries():
        params = ", ".join(f"{k} (required)" if f.is_required() else f"{k}={f.default!r}"
                           for k, f in dataset_params_model(entry.name).model_fields.items())
        rows.append([entry.name, entry.meta.get("description", ""), params or "—"])
    out.print(_table("data sets", ["name", "description", "params"], rows))


def print_runtimes(out: Console) -> None:
    """The capability table (each runtime package's ``spec`` module): one row per (runtime, precision), with what
    builds it, the device kinds of the runtime, and whether this host meets the row's hardware requirement (why not,
    below)."""
    from rich.markup import escape

    from edgekd.capabilities import CAPABILITIES, RUNTIME_SPECS
    from edgekd.runtime.hardware import unmet_requirement

    rows, why_not = [], []
    for row in CAPABILITIES:
        spec = RUNTIME_SPECS[row.runtime]
        built = f"{row.built_by}: {', '.join(row.methods)}" if row.built_by else "measured as is"
        here = "—"
        if row.requires is not None:
            why = unmet_requirement(row, spec.default_device)
            here = "yes" if why is None else "no"
            if why is not None:
                why_not.append(f"  {row.runtime}/{row.precision}: {escape(why)}")
        rows.append([row.runtime, row.precision, row.format, built, ", ".join(spec.device_kinds),
                     row.requires or "—", here, row.note])
    out.print(_table("runtimes: what edgekd builds and runs (edgekd/runtimes/<name>/spec.py; precision policy: "
                     "edgekd/runtime/precision.py)",
                     ["runtime", "precision", "format", "built by", "devices", "needs", "here", "artifact"], rows))
    if why_not:
        out.print("not on this host:\n" + "\n".join(why_not), soft_wrap=True)


def print_stages(out: Console) -> None:
    from edgekd.pipeline.stage import EVERY_EARLIER_STAGE, ordered_stages

    rows = [[s.name, "every earlier stage" if s.needs == EVERY_EARLIER_STAGE else ", ".join(s.needs) or "—",
             s.description] for s in ordered_stages()]
    out.print(_table("stages, in order", ["stage", "reads outputs of", "what it does"], rows))


def print_recipes(out: Console) -> None:
    """Every recipe a name resolves to (./pipelines first, then the bundled ones), with its one-line description."""
    from edgekd.config import available_recipes
    from edgekd.config.loader import read_yaml
    from edgekd.errors import UserError

    rows = []
    for name, path in available_recipes().items():
        try:
            description = str(read_yaml(path).get("description", ""))
        except UserError as exc:
            description = f"(unreadable: {exc})"
        rows.append([name, str(path), description])
    table = _table("recipes (edgekd run NAME --device DEVICE)", ["name", "path", "description"], rows)
    table.columns[1].overflow = "fold"  # a long path wraps whole rather than ending in an ellipsis
    out.print(table)


ZOO_VIEWS: dict[str, Callable[[Console], None]] = {
    "models": print_models,
    "losses": print_losses,
    "datasets": print_datasets,
    "runtimes": print_runtimes,
    "stages": print_stages,
    "recipes": print_recipes,
}
