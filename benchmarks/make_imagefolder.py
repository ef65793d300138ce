"""Write an image folder of RGB JPEGs of mixed sizes from Fashion-MNIST, offline: a stand-in for a user's photos.

    python benchmarks/make_imagefolder.py --out data/imagefolder-224 --images 1430

Layout ``OUT/train/<class>/<n>.jpg`` (the ``image-folder`` data set carves its test split), the first ``--images``
training images of Fashion-MNIST taken class by class in turn (so every class gets ``images / 10`` ± 1). Each
28×28 grey image is upscaled (bicubic) to a random size between ``--min-size`` and ``--max-size`` pixels per side
(independently, so aspect ratios vary), tinted with a random colour (``pixel × colour / 255`` per channel, so the
content stays and the images are truly RGB), and saved as JPEG at quality 90. Seeded: the same arguments write
the same files. Needs Pillow and the Fashion-MNIST IDX files (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.data._idx import fetch_idx, parse_idx
from edgekd.data.idx import IDX_SPECS


def class_folder_name(name: str) -> str:
    """A class name usable as a folder name (``T-shirt/top`` → ``T-shirt-top``)."""
    return name.replace("/", "-")


def make_imagefolder(out: Path, images: int, *, min_size: int = 48, max_size: int = 320, seed: int = 0,
                     data_dir: Path | None = None) -> int:
    """Write ``images`` JPEGs under ``out/train/<class>/``; returns how many were written."""
    spec = IDX_SPECS["fashion-mnist"]
    contents, folder = fetch_idx(spec, data_dir, None)
    pixels = parse_idx(contents["train-images-idx3-ubyte"], what=str(folder))
    labels = parse_idx(contents["train-labels-idx1-ubyte"], what=str(folder))
    by_class = [np.flatnonzero(labels == k) for k in range(len(spec.class_names))]
    order = [int(index) for group in zip(*by_class) for index in group][:images]  # class by class in turn
    rng = np.random.default_rng(seed)
    for count, index in enumerate(order):
        width, height = (int(s) for s in rng.integers(min_size, max_size + 1, size=2))
        colour = rng.integers(96, 256, size=3).astype(np.float32)
        grey = Image.fromarray(pixels[index]).resize((width, height), Image.Resampling.BICUBIC)
        rgb = (np.asarray(grey, dtype=np.float32)[..., None] * colour / 255.0).round().astype(np.uint8)
        target = out / "train" / class_folder_name(spec.class_names[labels[index]]) / f"{count:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb, "RGB").save(target, "JPEG", quality=90)
    return len(order)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (train/<class>/*.jpg)")
    parser.add_argument("--images", type=int, default=1430, help="number of images")
    parser.add_argument("--min-size", type=int, default=48, help="smallest side, pixels")
    parser.add_argument("--max-size", type=int, default=320, help="largest side, pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="folder with the Fashion-MNIST IDX files")
    args = parser.parse_args()
    written = make_imagefolder(args.out, args.images, min_size=args.min_size, max_size=args.max_size,
                               seed=args.seed, data_dir=args.data_dir)
    print(f"wrote {written} JPEGs under {args.out / 'train'}")


if __name__ == "__main__":
    main()
