"""Content hashes: files by SHA-256 of their bytes, configs by SHA-256 of their canonical JSON."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(path: Path) -> list[Path]:
    """The files an artifact consists of: an OpenVINO IR ``.xml`` brings its ``.bin``; a folder, all its files."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        return [path, path.with_suffix(".bin")]
    return [path]


def sha256_path(path: Path) -> str:
    """Digest of an artifact: of its one file, or of every file it consists of (names and contents)."""
    files = artifact_files(path)
    if len(files) == 1 and files[0] == path:
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    """Bytes of an artifact, all its files together."""
    return sum(p.stat().st_size for p in artifact_files(path))


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
