"""IDX files (the MNIST family): parse, find in the usual folders, verify by MD5, download when missing.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header ``0x00 0x00 <type> <ndim>``,
then ``ndim`` big-endian uint32 sizes, then the values in row-major order.

Files are verified by the MD5 of their *uncompressed* IDX bytes, so one checksum accepts the official ``.gz``, a
re-compressed ``.gz`` (Debian's ``dataset-fashion-mnist`` strips the file name from the gzip header, which changes the
archive's MD5 but not its content) and an uncompressed file alike. Hashing costs about 0.1 s for all of Fashion-MNIST
(55 MB), far less than decompressing it, so it is done on every load rather than cached.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import math
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd._atomic import atomic_write_bytes
from edgekd.errors import UserError

log = logging.getLogger(__name__)

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT_S = 60.0
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class IdxSpec:
    """One IDX data set: name, MD5 of each uncompressed file, download URL, class names, how to get it, citation."""

    name: str
    md5: dict[str, str]
    default_url: str
    class_names: tuple[str, ...]
    hint: str
    citation: str


class DownloadError(Exception):
    """A download failed for a reason outside the data (no network, HTTP error, refused connection)."""


def cache_dir(name: str) -> Path:
    """Where downloads of data set ``name`` go: ``~/.cache/edgekd/<name>``."""
    return Path.home() / ".cache" / "edgekd" / name


def candidate_folders(name: str, data_dir: Path | None) -> list[Path]:
    """Folders searched, in order: ``data_dir``, ``$EDGEKD_DATA`` (each as ``<dir>/<name>`` then ``<dir>``),
    ``/usr/share/datasets/<name>``, then the download cache."""
    folders: list[Path] = []
    for base in (data_dir, os.environ.get("EDGEKD_DATA") or None):
        if base is not None:
            folders += [Path(base) / name, Path(base)]
    folders += [SYSTEM_DATA_DIR / name, cache_dir(name)]
    return list(dict.fromkeys(folders))


def files_in(folder: Path) -> dict[str, Path]:
    """The IDX files present in ``folder``, by stem: ``<stem>.gz`` if it exists, else ``<stem>``."""
    found: dict[str, Path] = {}
    for stem in IDX_STEMS:
        for path in (folder / f"{stem}.gz", folder / stem):
            if stem not in found and path.is_file():
                found[stem] = path
    return found


def parse_idx(data: bytes, *, what: str) -> np.ndarray:
    """The array stored in the IDX bytes ``data`` (native byte order); UserError on a bad magic or a bad size."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise UserError(f"{what}: not an IDX file (magic number {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{what}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise UserError(f"{what}: {len(data)} bytes, its IDX header {dims} announces {expected} (truncated or corrupt)")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _uncompressed(data: bytes, gzipped: bool, what: str, hint: str) -> bytes:
    if not gzipped:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{what}: corrupt gzip file ({error}); {hint}") from None


def verified_content(data: bytes, *, gzipped: bool, expected_md5: str, what: str, hint: str) -> bytes:
    """The uncompressed IDX bytes of ``data``, after checking their MD5 against ``expected_md5``."""
    content = _uncompressed(data, gzipped, what, hint)
    actual = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if actual != expected_md5:
        raise UserError(f"{what}: MD5 of the IDX data is {actual}, expected {expected_md5} (corrupt file); {hint}")
    return content


def download(url: str, target: Path, *, expected_md5: str, hint: str) -> bytes:
    """Fetch ``url`` (a ``.gz``), verify it, write it atomically to ``target``; return the uncompressed IDX bytes.

    Raises:
        DownloadError: the server could not be reached or answered with an error.
        UserError: the server sent something other than the expected file.
    """

    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise DownloadError(f"downloading {url} failed ({getattr(error, 'reason', error)})") from None
    content = verified_content(data, gzipped=True, expected_md5=expected_md5, what=f"downloaded {url}", hint=hint)
    atomic_write_bytes(target, data)
    return content


def read_verified(path: Path, *, expected_md5: str, hint: str) -> bytes:
    """The verified, uncompressed IDX bytes of the file at ``path`` (``.gz`` or not)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror}); {hint}") from None
    return verified_content(data, gzipped=path.suffix == ".gz", expected_md5=expected_md5, what=str(path), hint=hint)


def fetch_idx(spec: IdxSpec, data_dir: Path | None, url: str | None) -> tuple[dict[str, bytes], Path]:
    """The four verified IDX files of ``spec`` (uncompressed bytes by stem) and the folder they came from.

    The first folder of :func:`candidate_folders` holding all four files wins; if none does, the missing files are
    downloaded into the cache folder from ``url`` (else ``$EDGEKD_DATA_URL``, else the official location).
    """
    folders = candidate_folders(spec.name, data_dir)
    for folder in folders:
        found = files_in(folder)
        if len(found) == len(IDX_STEMS):
            return {s: read_verified(p, expected_md5=spec.md5[s], hint=spec.hint) for s, p in found.items()}, folder
    cache = cache_dir(spec.name)
    cached = files_in(cache)
    base = (url or os.environ.get("EDGEKD_DATA_URL") or spec.default_url).rstrip("/")
    contents: dict[str, bytes] = {}
    try:
        for stem in IDX_STEMS:
            contents[stem] = (
                read_verified(cached[stem], expected_md5=spec.md5[stem], hint=spec.hint)
                if stem in cached
                else download(f"{base}/{stem}.gz", cache / f"{stem}.gz", expected_md5=spec.md5[stem], hint=spec.hint)
            )
    except DownloadError as error:
        looked = ", ".join(str(f) for f in folders)
        raise UserError(f"data set {spec.name!r}: IDX files not found in {looked}, and {error}; {spec.hint}") from None
    return contents, cache
