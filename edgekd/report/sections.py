"""Report sections of the distillation engine: the TA chain, the TA selection and the ablation table."""

from __future__ import annotations

from typing import Any

from edgekd.report.tables import markdown_table


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def chain_section(info: dict[str, Any]) -> list[str]:
    """The deployed student's teacher-assistant chain, one row per step (nothing for a single-step distillation)."""
    steps = info.get("steps", [])
    if len(steps) < 2:
        return []
    rows = [[str(s["step"]), s["name"], s["teacher"] or "— (CE only)", f"{s['parameters']:,}",
             f"{s['best_epoch']} / {s['epochs']}", _acc(s["val_accuracy"]), "yes" if s.get("reused") else "no"]
            for s in steps]
    return [
        "## Teacher-assistant chain", "",
        f"Chain `{' → '.join(info['chain'])}` ({info['chain_source']}); each step distilled from the one before it "
        "(TAKD, Mirzadeh et al., AAAI 2020).", "",
        markdown_table(["step", "model", "teacher", "parameters", "best epoch", "val accuracy",
                        "resumed from a finished step"], rows),
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
    """Test accuracy of the student per variant: mean ± std over seeds, each seed, gain over no-KD."""
    rows = []
    for row in info["table"]:
        std = "" if row["std"] is None else f" ± {row['std']:.4f}"
        gain = "—" if row["gain"] is None else f"{row['gain'] * 100:+.2f} pts"
        twin = row["same_chain_as"]
        chain = " → ".join(row["chain"]) + (f" (same chain as {twin})" if twin else "")
        rows.append([row["variant"], chain, f"{row['mean']:.4f}{std}",
                     ", ".join(f"{a:.4f}" for a in row["accuracies"]), gain])
    return [
        "## Ablation: does distillation pay?", "",
        f"Student test accuracy ({info['test_images']} images), {info['statistic']}; seeds {info['seeds']}, "
        f"{info['epochs']} epoch(s) per model on {info['train_images']} training images, same budget and initial "
        "weights per seed for every variant.", "",
        markdown_table(["variant", "chain", "test accuracy", "per seed", "vs no-KD"], rows),
        "",
    ]


def distillation_sections(records: dict[str, dict[str, Any]]) -> list[str]:
    """The sections whose stages ran, in pipeline order."""
    parts: list[str] = []
    if (info := records.get("select-assistant", {}).get("info")) and "candidates" in info:
        parts += assistant_section(info)
    if (info := records.get("distill", {}).get("info")) and "steps" in info:
        parts += chain_section(info)
    if (info := records.get("ablation", {}).get("info")) and "table" in info:
        parts += ablation_section(info)
    return parts
