"""The model card of a deployed artifact: ``model_card.json`` (read by ``predict.py``) and ``MODEL_CARD.md``.

The card follows the headings of Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019) that a run can
fill from its own records: model details (files, runtime, input and output), metrics (measured in the artifact's own
runtime on the device), how it was made (stages, teacher, student, distillation, quantization, export, the recipe)
and the environment (library versions, host, commit).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import yaml

from edgekd.capabilities import RUNTIME_SPECS
from edgekd.runtimes import runtime_module


def predict_runtimes() -> tuple[str, ...]:
    """The runtimes ``predict.py`` can run: those whose session module has a ``predictor`` (it ships beside the
    script in the deploy folder)."""
    return tuple(name for name, spec in RUNTIME_SPECS.items()
                 if spec.session and hasattr(importlib.import_module(spec.session), "predictor"))

CARD_VERSION = 1


def _lineage(manifest: dict[str, Any], artifact: dict[str, Any]) -> list[dict[str, Any]]:
    """``artifact`` and the artifacts it was built from (``info.source``), nearest first."""
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    chain, seen = [artifact], {artifact["name"]}
    while (source := chain[-1].get("info", {}).get("source")) in by_name and source not in seen:
        chain.append(by_name[source])
        seen.add(source)
    return chain


def made_by(manifest: dict[str, Any], artifact: dict[str, Any], recipe: dict[str, Any],
            records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How ``artifact`` was made: the stages that ran and the recipe sections behind each step."""
    chain = _lineage(manifest, artifact)
    torch_model = next((a for a in chain if a["format"] == "torch"), None)
    teacher = next((a for a in manifest["artifacts"] if a["role"] == "teacher" and a["format"] == "torch"), None)
    distill = records.get("distill", {}).get("info", {})
    out: dict[str, Any] = {
        "stages": [{"name": s["name"], "status": s["status"], "seconds": s["seconds"]}
                   for s in manifest["stages"] if s["status"] in {"done", "cached"}],
        "built_from": [a["name"] for a in chain[1:]],
    }
    if recipe.get("teacher") and teacher is not None:
        trained = records.get("train-teacher", {}).get("info", {})
        out["teacher"] = {"model": teacher.get("info", {}).get("model", recipe["teacher"]["model"]),
                          "parameters": teacher.get("info", {}).get("parameters"),
                          "trained": (f"{trained['epochs']} epochs (best epoch {trained.get('best_epoch')})"
                                      if "epochs" in trained else "from checkpoint, not trained"),
                          "val_accuracy": teacher.get("metrics", {}).get("val_accuracy"),
                          "test_accuracy": teacher.get("metrics", {}).get("accuracy")}
    if torch_model is not None and torch_model["role"] == "student":
        out["student"] = {"model": torch_model.get("info", {}).get("model", (recipe.get("student") or {}).get("model")),
                          "parameters": torch_model.get("info", {}).get("parameters"),
                          "val_accuracy": torch_model.get("metrics", {}).get("val_accuracy"),
                          "test_accuracy": torch_model.get("metrics", {}).get("accuracy")}
    if recipe.get("distill"):
        section = recipe["distill"]
        out["distillation"] = {"ce_weight": section["ce_weight"], "losses": section["losses"],
                               "chain": distill.get("chain"),
                               "epochs": distill.get("epochs", section["train"]["epochs"]),
                               "best_epoch": distill.get("best_epoch"), "val_accuracy": distill.get("val_accuracy"),
                               "last_epoch": distill.get("last_epoch"),
                               "last_val_accuracy": distill.get("last_val_accuracy")}
    if artifact["precision"] == "int8":
        out["quantization"] = {"method": artifact.get("info", {}).get("method"), "settings": recipe.get("quantize")}
    if artifact["format"] != "torch":
        out["export"] = {"format": artifact["format"], "precision": artifact["precision"],
                         "settings": recipe.get("export"), "parity": artifact.get("info", {}).get("parity")}
    return out


def runtime_settings(artifact: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What ``predict.py`` opens the model with: edgekd's runner options plus what the runtime package's ``deploy``
    module adds (e.g. OpenVINO's explicit precision hint), where it has one."""
    name = artifact["runtime"]
    settings = {"name": name, **options}
    if importlib.util.find_spec(runtime_module(name, "deploy")) is not None:
        settings = {"name": name, **importlib.import_module(runtime_module(name, "deploy")).settings(
            artifact["precision"], options)}
    return settings


def build_card(*, manifest: dict[str, Any], artifact: dict[str, Any], recipe: dict[str, Any],
               device: dict[str, Any], records: dict[str, dict[str, Any]], selection: dict[str, Any],
               files: list[dict[str, Any]], runtime_options: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """The JSON model card of ``artifact`` (a manifest entry) whose files were copied as ``files``."""
    metrics = {k: v for k, v in artifact.get("metrics", {}).items() if k != "samples_ms"}
    prov = manifest["provenance"]
    return {
        "model_card_version": CARD_VERSION,
        "name": artifact["name"],
        "recipe_name": manifest["recipe"],
        "device": device,
        "smoke": manifest["smoke"],
        "artifact": {k: artifact[k] for k in ("name", "format", "precision", "runtime", "role", "bytes", "sha256",
                                              "path")},
        "model_file": files[0]["path"],
        "files": files,
        "input": artifact["input"],
        "output": {"kind": "logits", "classes": class_names},
        "runtime": runtime_settings(artifact, runtime_options),
        "runtime_version": prov["libraries"].get(artifact["runtime"]),
        "metrics": metrics,
        "selection": selection,
        "candidates": candidate_rows(manifest, selection),
        "budgets": manifest.get("budgets", {}),
        "made_by": made_by(manifest, artifact, recipe, records),
        "environment": {"edgekd_version": manifest["edgekd_version"], "created": manifest["created"],
                        "libraries": prov["libraries"], "host": prov["host"], "git_commit": prov["git_commit"]},
        "recipe_file": manifest.get("recipe_file", ""),
        "overrides": manifest.get("overrides", []),
        "recipe": recipe,
    }


def candidate_rows(manifest: dict[str, Any], selection: dict[str, Any]) -> list[dict[str, Any]]:
    """Every selection candidate with its validation and test accuracy and latency (at the budget's statistic)."""
    stat = manifest.get("budgets", {}).get("latency_stat", "p90")
    names = set(selection.get("candidates", []))
    return [{"name": a["name"], "val_accuracy": a.get("metrics", {}).get("val_accuracy"),
             "test_accuracy": a.get("metrics", {}).get("accuracy"),
             "latency_ms": a.get("metrics", {}).get("latency_ms", {}).get(stat), "statistic": stat,
             "bytes": a["bytes"], "status": a.get("status", "ok")}
            for a in manifest["artifacts"] if a["name"] in names]


def _candidate_lines(card: dict[str, Any]) -> list[str]:
    """The table of every candidate (validation and test accuracy, latency, size), the selected one in bold."""
    rows = card.get("candidates") or []
    if not rows:
        return []
    stat = rows[0]["statistic"]
    lines = ["", f"| artifact | val accuracy | test accuracy | latency {stat} ms | MB |", "|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['name']}** (selected)" if r["name"] == card["name"] else r["name"]
        if r["status"] == "failed":
            name += " (failed)"
        lines.append(f"| {name} | {_num(r['val_accuracy'])} | {_num(r['test_accuracy'])} | "
                     f"{_num(r['latency_ms'], '.3f')} | {r['bytes'] / 1e6:.3f} |")
    return lines


def _num(value: Any, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _kv(mapping: dict[str, Any] | None) -> str:
    """``a=1, b=[x, y]`` for a settings dict."""
    return ", ".join(f"{k}={v}" for k, v in (mapping or {}).items()) or "defaults"


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _made_by_lines(made: dict[str, Any]) -> list[str]:
    lines = ["- stages: " + ", ".join(f"{s['name']} ({s['status']})" for s in made["stages"])]
    if made["built_from"]:
        lines.append(f"- built from: {' ← '.join(made['built_from'])}")
    if "teacher" in made:
        t = made["teacher"]
        lines.append(f"- teacher: `{t['model']['name']}` ({_kv(t['model'].get('kwargs'))}), {_count(t['parameters'])} "
                     f"parameters, {t['trained']}, val accuracy {_num(t.get('val_accuracy'))}, test accuracy "
                     f"{_num(t['test_accuracy'])}")
    if "student" in made:
        s = made["student"]
        lines.append(f"- student: `{s['model']['name']}` ({_kv(s['model'].get('kwargs'))}), {_count(s['parameters'])} "
                     f"parameters, val accuracy {_num(s.get('val_accuracy'))}, test accuracy "
                     f"{_num(s['test_accuracy'])} (torch)")
    if "distillation" in made:
        d = made["distillation"]
        losses = " + ".join(f"{t['weight']}×{t['name']} ({_kv(t.get('params'))})" for t in d["losses"])
        chain = " → ".join(d["chain"]) if d.get("chain") else "teacher → student"
        lines.append(f"- distillation: {d['ce_weight']}×CE" + (f" + {losses}" if losses else "")
                     + f", chain {chain}, {d['epochs']} epochs (best epoch {d['best_epoch']}, val accuracy "
                       f"{_num(d['val_accuracy'])}, kept; last epoch {d.get('last_epoch') or '—'}, val accuracy "
                       f"{_num(d.get('last_val_accuracy'))})")
    if "quantization" in made:
        q = made["quantization"]
        lines.append(f"- quantization: INT8, method `{q['method']}`; section: {_kv(q['settings'])}")
    if "export" in made:
        e = made["export"]
        parity = e.get("parity") or {}
        probe = parity.get("probe") or {}
        on = " + ".join(f"{n} {split}" for split, n in probe.items() if n)
        lines.append(f"- export: {e['format']} {e['precision']}, settings: {_kv(e['settings'])}"
                     + (f"; parity vs torch{f' on {on} images' if on else ''}: top-1 agreement "
                        f"{parity['top1_agreement']:.4f}" if parity else ""))
    return lines


def render_card(card: dict[str, Any], *, with_predict: bool) -> str:
    """``MODEL_CARD.md`` from the JSON card."""
    art, metrics, runtime = card["artifact"], card["metrics"], card["runtime"]
    latency = metrics.get("latency_ms", {})
    selection = card["selection"]
    env = card["environment"]
    shape = card["input"]["shape"]
    pip = f"numpy {art['runtime']}" + (f"=={card['runtime_version']}" if card.get("runtime_version") else "")
    parts = [
        f"# Model card — `{card['name']}`",
        "",
        f"Selected by edgekd {env['edgekd_version']} from recipe `{card['recipe_name']}` for device "
        f"`{card['device']['name']}` ({env['created']})."
        + (" **Smoke run: tiny budgets, the numbers are not meaningful.**" if card["smoke"] else ""),
        "",
        "## Files", "",
        "| file | bytes | sha256 |", "|---|---|---|",
        *(f"| `{f['path']}` | {f['bytes']:,} | `{f['sha256']}` |" for f in card["files"]),
        "",
        "## Run it", "",
    ]
    if with_predict:
        parts += ["Only numpy and the runtime are needed (Pillow for image files):", "", "```sh",
                  "python -m venv .venv", f".venv/bin/pip install {pip}",
                  ".venv/bin/python predict.py batch.npy   # float32 (N, C, H, W) in [0, 1], or an image file",
                  "```", ""]
    else:
        parts += [f"`predict.py` runs {' and '.join(predict_runtimes())} models only; open `{card['model_file']}` "
                  f"with {art['runtime']}.", ""]
    settings = _kv({k: v for k, v in runtime.items() if k != "name" and v is not None})
    parts += [
        "## Model", "",
        *_table([
            ("format / precision", f"{art['format']} / {art['precision']}"),
            ("runtime", f"{art['runtime']} {card.get('runtime_version') or ''} ({settings})"),
            ("input", f"{card['input']['dtype']} {card['input'].get('layout', 'NCHW')} "
                      f"(N, {', '.join(map(str, shape[1:]))}), values in {card['input']['range']}; normalisation is "
                      "inside the graph"),
            ("output", f"logits over {len(card['output']['classes'])} classes: {', '.join(card['output']['classes'])}"),
        ]),
        "",
        f"## Metrics (measured in {art['runtime']} on `{card['device']['name']}`)", "",
        *_table([
            ("validation accuracy", f"{_num(metrics.get('val_accuracy'))} on {metrics.get('val_samples', '?')} "
                                    "validation images (what every choice read)"),
            ("test accuracy", f"{_num(metrics.get('accuracy'))} on {metrics.get('test_samples', '?')} test images "
                              "(reported only)"),
            ("latency p50 / p90 / p99 (ms)", " / ".join(_num(latency.get(k), ".3f") for k in ("p50", "p90", "p99"))),
            ("latency mean ± std (ms)", f"{_num(latency.get('mean'), '.3f')} ± {_num(latency.get('std'), '.3f')}"),
            ("timed runs, batch, threads", f"{latency.get('runs', '—')}, {metrics.get('batch_size', '—')}, "
                                           f"{metrics.get('threads', '—')}"),
            ("size", f"{art['bytes']:,} bytes"),
        ]),
        "",
        "## Why this artifact", "",
        f"Chosen on the **{selection.get('selected_by', 'test')}** split: " + selection["reason"],
        *_candidate_lines(card),
        "",
        "Budgets: " + (", ".join(f"{k} = {v}" for k, v in card["budgets"].items() if v is not None) or "none")
        + (" — met." if selection["meets_budgets"] else " — **not met** (smoke run: not enforced)."),
        "",
        "## How it was made", "",
        *_made_by_lines(card["made_by"]),
        "",
        "## Environment", "",
        f"- host: {env['host']['platform']} ({env['host']['cpu_count']} CPUs), Python {env['host']['python']}",
        f"- libraries: {', '.join(f'{k} {v}' for k, v in env['libraries'].items())}",
        f"- edgekd commit: {env['git_commit'] or 'n/a (installed package)'}",
        "",
        "## Recipe", "",
        f"`{card['recipe_file'] or '(in memory)'}`" + (f" with `--set {' --set '.join(card['overrides'])}`"
                                                       if card["overrides"] else "") + ", resolved:",
        "", "```yaml", yaml.safe_dump(card["recipe"], sort_keys=False).rstrip(), "```", "",
    ]
    return "\n".join(parts)
