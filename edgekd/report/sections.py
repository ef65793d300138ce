"""Report sections the stages supply (through :meth:`~edgekd.pipeline.stage.Stage.report_sections`): training lines,
the TA chain, the TA selection, the ablation table, quantization, mixed precision and the outputs not built."""

from __future__ import annotations

from typing import Any

from edgekd.pipeline.stage import ReportSection
from edgekd.report.tables import computed_in, markdown_table


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def chain_section(info: dict[str, Any]) -> list[str]:
    """The deployed student's teacher-assistant chain, one row per step (nothing for a single-step distillation)."""
    steps = info.get("steps", [])
    if len(steps) < 2:
        return []
    rows = [[str(s["step"]), s["name"], s["teacher"] or "— (CE only)", f"{s['parameters']:,}",
             f"{s['best_epoch']} / {s['epochs']}", _acc(s["val_accuracy"]), _acc(s.get("last_val_accuracy")),
             _acc(s.get("test_accuracy")), "yes" if s.get("reused") else "no"] for s in steps]
    return [
        "## Teacher-assistant chain", "",
        f"Chain `{' → '.join(info['chain'])}` ({info['chain_source']}); each step distilled from the one before it "
        "(TAKD, Mirzadeh et al., AAAI 2020).", "",
        markdown_table(["step", "model", "teacher", "parameters", "best epoch", "val accuracy (best)",
                        "val accuracy (last)", "test accuracy (reported)", "resumed from a finished step"], rows),
        "",
    ]


def assistant_section(info: dict[str, Any]) -> list[str]:
    """Every TA candidate with its scale, validation accuracy, NPSDs and score; the chosen one in bold."""
    rows = []
    for c in info["candidates"]:
        name = f"**{c['name']}** (selected)" if c["selected"] else c["name"]
        rows.append([name, f"{c['parameters']:,}", f"{c['scale']:.3f}", _acc(c["val_accuracy"]),
                     f"{c['npsd_teacher_side']:.4f}", f"{c['npsd_student_side']:.4f}", f"{c['score']:.4f}"])
    teacher, student = info["teacher"], info["student"]
    return [
        "## Teacher-assistant selection", "",
        f"Candidates trained {info['epochs']} epoch(s) on {info['train_images']} images with KD from the teacher "
        f"(teacher: {teacher['parameters']:,} parameters, val accuracy {teacher['val_accuracy']:.4f}; student anchor: "
        f"scale {student['scale']:.3f}, val accuracy {student['val_accuracy']:.4f}). Criterion: {info['criterion']}.",
        "",
        markdown_table(["candidate", "parameters", "scale", "val accuracy", "NPSD teacher→candidate",
                        "NPSD candidate→student", "score"], rows),
        "",
    ]


def ablation_section(info: dict[str, Any]) -> list[str]:
    """Test accuracy of the student per variant: mean ± std over seeds at the best and the last epoch, each seed,
    gain over no-KD and whether it exceeds the seeds' spread."""
    rows = []
    for row in info["table"]:
        twin = row["same_chain_as"]
        chain = " → ".join(row["chain"]) + (f" (same chain as {twin})" if twin else "")
        rows.append([row["variant"], chain, _mean_std(row["mean"], row["std"]),
                     ", ".join(f"{a:.4f}" for a in row["accuracies"]),
                     "—" if row.get("last_mean") is None else _mean_std(row["last_mean"], row["last_std"]),
                     _gain(row)])
    return [
        "## Ablation: does distillation pay?", "",
        f"Student test accuracy ({info['test_images']} images), {info['statistic']}; seeds {info['seeds']}, "
        f"{info['epochs']} epoch(s) per model on {info['train_images']} training images, same budget and initial "
        "weights per seed for every variant. Best epoch: the epoch chosen on validation, whose weights are kept. "
        "A gain over no-KD is a finding only when it exceeds the larger of the two rows' standard deviations.", "",
        markdown_table(["variant", "chain", "test accuracy (best epoch)", "per seed", "last epoch", "vs no-KD"], rows),
        "",
        *_grid_lines(info.get("grid")),
    ]


def _mean_std(mean: float, std: float | None) -> str:
    return f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")


def _gain(row: dict[str, Any]) -> str:
    """The gain over no-KD in points, with the spread rule's verdict where there are seeds to apply it."""
    if row["gain"] is None:
        return "—"
    verdict = {True: " (finding)", False: " (within spread)", None: ""}[row.get("finding")]
    return f"{row['gain'] * 100:+.2f} pts{verdict}"


def _grid_lines(grid: dict[str, Any] | None) -> list[str]:
    """The automatically selected assistant against the best assistant of the ``ta-grid`` rows."""
    if grid is None:
        return []
    if grid["gap"] <= 0:
        verdict = "the best of the grid"
    else:
        relation = "more than" if grid["finding"] else "within"
        verdict = (f"{grid['gap'] * 100:.2f} points below the grid's best, {grid['best']}: "
                   f"{relation} the seeds' spread ({grid['spread'] * 100:.2f})")
    return [f"Selected assistant **{grid['selected']}**: rank {grid['rank']} of {grid['candidates']} candidates "
            f"trained as the assistant of the full chain; {verdict}.", ""]


def training_line(stage: str, info: dict[str, Any]) -> list[str]:
    """The line of a training stage: best epoch on validation (whose weights are kept), last epoch, the kept weights'
    test accuracy (reported only), and its losses (nothing if it did not train)."""
    if "best_epoch" not in info:
        return []
    extra = f", losses {', '.join(info['losses']) or 'none (CE only)'}" if "losses" in info else ""
    if numerics := info.get("numerics"):
        layout = "channels-last" if numerics["channels_last"] else "NCHW"
        kept = f", {len(numerics['contiguous_layers'])} layer(s) kept NCHW (oneDNN#6035)" \
            if numerics["contiguous_layers"] else ""
        extra += f"; trained in {numerics['precision']}, {layout}{kept} ({numerics['reason']})"
    last = (f"; last epoch {info['last_epoch']}, val accuracy {info['last_val_accuracy']:.4f}"
            if info.get("last_val_accuracy") is not None else "")
    test = f"; test accuracy of the kept weights {info['test_accuracy']:.4f}" if "test_accuracy" in info else ""
    return [f"- `{stage}`: best epoch {info['best_epoch']} of {info['epochs']} on validation "
            f"(val accuracy {info['val_accuracy']:.4f}, weights kept){last}{test}{extra}."]


def quantization_section(manifest: dict[str, Any]) -> list[str]:
    """INT8 artifacts against the fp32 artifact of the same format: validation and test accuracy and drop, size
    ratio, top-1 agreement with torch."""
    artifacts = {a["name"]: a for a in manifest["artifacts"]}
    rows = []
    for art in manifest["artifacts"]:
        if art["precision"] != "int8":
            continue
        fp32 = artifacts.get(f"{art['info'].get('source')}-{art['format']}-fp32")
        accuracies = []
        for metric in ("val_accuracy", "accuracy"):
            acc, ref = art["metrics"].get(metric), (fp32 or {}).get("metrics", {}).get(metric)
            drop = f"{100 * (ref - acc):+.2f}" if acc is not None and ref is not None else "—"
            accuracies += [f"{ref:.4f}" if ref is not None else "—", f"{acc:.4f}" if acc is not None else "—", drop]
        fp32_bytes = (fp32 or {}).get("bytes")  # a failed build has no file
        ratio = f"{art['bytes'] / fp32_bytes:.2f}" if fp32_bytes and art.get("bytes") else "—"
        parity = art["info"].get("parity", {})
        rows.append([art["name"], art["info"].get("method", "—"), art["runtime"], *accuracies, ratio,
                     f"{parity['top1_agreement']:.4f}" if parity else "—"])
    if not rows:
        return []
    header = ["artifact", "method", "runtime", "fp32 val", "int8 val", "val drop (points)", "fp32 test", "int8 test",
              "test drop (points)", "size vs fp32", "top-1 agreement"]
    return ["Each INT8 artifact against the fp32 artifact of the same format, in their own runtime: accuracy on the "
            "validation split (what accuracy control and selection read) and on the test split (reported only); "
            "top-1 agreement with the torch model on validation images topped up with training images.", "",
            markdown_table(header, rows)]


#: rows of the per-node table beyond the float nodes (the rest stay in the manifest's ``info.mixed.sensitivity``)
MIXED_EXTRA_ROWS = 5


def _node_times(art: dict[str, Any]) -> dict[str, float]:
    """ONNX node → milliseconds the artifact's runtime profile spent in the layers it maps to (none if unprofiled)."""
    times: dict[str, float] = {}
    for layer in art.get("metrics", {}).get("layers", []):
        for node in layer.get("onnx_nodes", []):
            times[node] = times.get(node, 0.0) + layer["time_ms"]
    return times


def mixed_precision_lines(art: dict[str, Any]) -> list[str]:
    """A mixed-precision INT8 artifact's choice and its per-node table (most sensitive first): output SQNR, the SQNR
    of the error the node adds, the accuracy regained when it alone is float, its precision and its time in the
    artifact's runtime profile, and the latency its INT8 saves against the fp32 model (``metrics.latency_saved``)."""
    from edgekd.report.int8 import saved_by_node

    mixed = art["info"]["mixed"]
    rule = f"the fewest within a drop of {mixed['max_drop']}" if mixed["max_drop"] is not None else "a fixed count"
    tried = ", ".join(f"{t['k']}: {t['accuracy']:.4f}" for t in mixed["tried"])
    times, saved = _node_times(art), saved_by_node(art)
    shown = mixed["sensitivity"][:mixed["k"] + MIXED_EXTRA_ROWS]
    rows = [[f"`{r['node']}`", r["op_type"], f"{r['sqnr_db']:.1f}", f"{r['added_sqnr_db']:.1f}",
             f"{100 * r['accuracy_gain']:+.2f}", r["precision"],
             f"{times[r['node']]:.3f}" if r["node"] in times else "—",
             f"{saved[r['node']]:+.3f}" if r["node"] in saved else "—"] for r in shown]
    more = len(mixed["sensitivity"]) - len(shown)
    twin = (f" (ranked by `{mixed['engine']}`, which kept no node in float: this artifact is its graph)"
            if "engine" in mixed else "")
    compute = computed_in(art["precision"], art.get("metrics") or {}, art.get("info") or {})
    return [f"`{art['name']}`{twin}: {mixed['k']} node(s) in float ({rule}), chosen on the {mixed['split']} split "
            f"({mixed['ranking_samples']} samples): accuracy {mixed['accuracy']:.4f}, fp32 "
            f"{mixed['fp32_accuracy']:.4f}, {_all_int8(mixed)}; accuracy by nodes in float: "
            f"{tried}; computed in {compute}.", "",
            markdown_table(["node", "op", "SQNR (dB)", "added SQNR (dB)", "accuracy if float (points)", "precision",
                            "time (ms)", "latency saved (ms)"], rows),
            *([""] + [f"{more} more INT8 nodes in the manifest (`info.mixed.sensitivity`)."] if more > 0 else []),
            *_chosen_by_lines(mixed)]


def _chosen_by_lines(mixed: dict[str, Any]) -> list[str]:
    """For an engine that keeps another engine's choice in float (``info.mixed.chosen_by``): whose choice it is,
    with that engine's accuracy by nodes in float, and each chosen node it could not keep in float, with why."""
    chosen = mixed.get("chosen_by")
    if not chosen:
        return []
    tried = ", ".join(f"{t['k']}: {t['accuracy']:.4f}" for t in chosen["tried"])
    unmapped = mixed.get("unmapped") or {}
    return ["", f"The float nodes are `{chosen['engine']}`'s choice ({len(chosen['excluded'])} node(s); its accuracy "
                f"by nodes in float: {tried})" + (", kept in INT8 here:" if unmapped else "."),
            *(f"- `{node}`: {why}" for node, why in unmapped.items())]


def _all_int8(mixed: dict[str, Any]) -> str:
    """The all-INT8 accuracy of a mixed-precision search: its engine's own, and the ranking's where they differ."""
    own, ranking = mixed.get("int8_accuracy"), mixed.get("ranking_int8_accuracy")
    if own is None:
        return f"all-INT8 (ONNX Runtime, the ranking's) {ranking:.4f}" if ranking is not None else "all-INT8 not tried"
    return f"all-INT8 {own:.4f}" + (f" (the ranking's ONNX Runtime INT8: {ranking:.4f})"
                                    if ranking is not None and ranking != own else "")


def not_built_lines(not_built: dict[str, str]) -> list[str]:
    """``- `runtime/precision`: why`` for every output a stage did not build."""
    return [f"- `{k}`: {v}" for k, v in not_built.items()]


def as_sections(lines: list[str], *, summary: bool = False) -> list[ReportSection]:
    """A section written as markdown lines (``## title``, blank, body..., blank) as a :class:`ReportSection`."""
    if not lines:
        return []
    body = lines[2:-1] if lines[-1] == "" else lines[2:]
    return [ReportSection(lines[0].removeprefix("## "), body, summary)]
