#!/usr/bin/env python3
"""Run the deployed model on a .npy batch or an image file and print the top-1 class of every sample.

Needs only numpy and the model's runtime, plus Pillow for image files; edgekd is not needed. The runtime is set up by
``edgekd_session.py`` beside this file (the runtime's own session module from edgekd, its ``predictor``), exactly
as edgekd measured it. Settings come from ``model_card.json`` beside this file: the model file, the runtime with the
options the model was measured with (threads, execution providers, device, an explicit inference precision where
the runtime would otherwise choose its own), the input spec and the class names.

    python predict.py batch.npy        # float32 (N, C, H, W) in [0, 1]; also (C, H, W) or (H, W) for one sample
    python predict.py image.png        # converted to the model's channels, resized, scaled to [0, 1]
    python predict.py batch.npy --json # one JSON object per sample

Output, one line per sample: ``index<TAB>class<TAB>class name<TAB>softmax probability``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import numpy as np

HERE = Path(__file__).resolve().parent


def fail(message: str) -> NoReturn:
    """One line on stderr, exit 2 (bad input)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_input(path: Path, chw: list[int]) -> np.ndarray:
    """The samples of ``path`` as float32 NCHW in [0, 1] (``chw``: the model's channels, height, width)."""
    channels, height, width = chw
    if not path.is_file():
        fail(f"{path}: no such file")
    if path.suffix.lower() == ".npy":
        x = np.load(path, allow_pickle=False)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
        x = x.reshape((1, 1, *x.shape)) if x.ndim == 2 else x[None] if x.ndim == 3 else x
    else:
        try:
            from PIL import Image
        except ImportError:
            fail(f"{path}: reading image files needs Pillow (pip install pillow), or pass a .npy batch")
        with Image.open(path) as image:
            mode = "L" if channels == 1 else "RGB"
            resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)  # Pillow >= 9.1
            pixels = np.asarray(resized, dtype=np.float32) / 255.0
        x = (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))[None]
    if x.ndim != 4 or list(x.shape[1:]) != list(chw):
        fail(f"{path}: samples of shape {tuple(x.shape)}; the model takes (N, {channels}, {height}, {width})")
    if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        fail(f"{path}: pixel values in [{float(x.min()):.3g}, {float(x.max()):.3g}]; the model takes [0, 1]")
    return np.ascontiguousarray(x)


def logits(run: Callable[[np.ndarray], np.ndarray], fixed: int | None, x: np.ndarray, batch_size: int
           ) -> np.ndarray:
    """Logits of every sample, ``batch_size`` at a time (a model with a fixed batch gets zero-padded batches)."""
    step = fixed or batch_size
    out = []
    for start in range(0, len(x), step):
        batch = x[start:start + step]
        real = len(batch)
        if fixed is not None and real < fixed:
            batch = np.concatenate([batch, np.zeros((fixed - real, *batch.shape[1:]), dtype=np.float32)])
        out.append(np.asarray(run(batch), dtype=np.float32)[:real])
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Top-1 classes of the deployed model (see MODEL_CARD.md).")
    parser.add_argument("input", type=Path, help=".npy batch (float32 NCHW in [0, 1]) or an image file")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per call (default 256)")
    parser.add_argument("--json", action="store_true", help="one JSON object per sample")
    args = parser.parse_args(argv)
    card = json.loads((HERE / "model_card.json").read_text(encoding="utf-8"))
    runtime = card["runtime"]
    x = load_input(args.input, card["input"]["shape"][1:])
    if len(x) == 0:
        fail(f"{args.input}: no samples")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    try:
        session = importlib.import_module("edgekd_session")
    except ImportError as exc:
        fail(f"{runtime['name']}: cannot import it or edgekd_session.py beside this script ({exc})")
    try:
        run, fixed = session.predictor(HERE / card["model_file"], runtime)
    except session.LoadError as exc:
        fail(f"{card['model_file']}: {exc}")
    scores = logits(run, fixed, x, max(1, args.batch_size))
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    names = card["output"]["classes"]
    for i, top in enumerate(scores.argmax(axis=1).tolist()):
        name = names[top] if top < len(names) else str(top)
        if args.json:
            print(json.dumps({"index": i, "class": top, "name": name, "probability": float(probabilities[i, top])}))
        else:
            print(f"{i}\t{top}\t{name}\t{probabilities[i, top]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
