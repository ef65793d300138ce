"""Content hashes: files by SHA-256 of their bytes, configs by SHA-256 of their canonical JSON.

An output (an artifact or another file a stage wrote) is described by :func:`describe_output`: one
``{path, bytes, sha256}`` record per file it consists of, so ``sha256sum -c`` checks it, plus a combined digest of
all its files for cache keys.
"""

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


def _combine(named_digests: list[tuple[str, str]]) -> str:
    """SHA-256 over the file names and SHA-256 digests, in order (the combined digest of several files)."""
    digest = hashlib.sha256()
    for name, file_digest in named_digests:
        digest.update(name.encode())
        digest.update(file_digest.encode())
    return digest.hexdigest()


def combined_sha256(path: Path) -> str:
    """Combined digest of an artifact: its one file's SHA-256, or a digest of every file's name and SHA-256 (for
    cache keys only: ``sha256sum`` cannot check it; the per-file digests of :func:`describe_output` it can)."""
    files = artifact_files(path)
    if files == [path]:
        return sha256_file(path)
    return _combine([(f.name, sha256_file(f)) for f in files])


def describe_output(run_dir: Path, path: Path) -> dict[str, Any]:
    """``bytes``, ``sha256`` (of ``path`` itself; for a folder, its combined digest), ``combined_sha256`` and
    ``files`` (``{path, bytes, sha256}`` for every file, paths relative to ``run_dir``) of the output at ``path``."""
    paths = artifact_files(path)
    files: list[dict[str, Any]] = [
        {"path": str(f.relative_to(run_dir)), "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in paths
    ]
    combined = (files[0]["sha256"] if paths == [path]
                else _combine([(f.name, record["sha256"]) for f, record in zip(paths, files)]))
    main = files[0]["sha256"] if path.is_file() else combined  # a file comes first among its artifact's files
    return {"bytes": sum(f["bytes"] for f in files), "sha256": main, "combined_sha256": combined, "files": files}


def output_change(run_dir: Path, output: dict[str, Any]) -> str | None:
    """Why a recorded output no longer matches the disk (``output missing/modified: PATH``), or None.

    A record with ``files`` is checked file by file; one written before per-file digests existed, by its one
    (combined) ``sha256``.
    """
    per_file = "files" in output
    for entry in output["files"] if per_file else [output]:
        path = run_dir / entry["path"]
        if not path.exists():
            return f"output missing: {entry['path']}"
        if (sha256_file(path) if per_file else combined_sha256(path)) != entry["sha256"]:
            return f"output modified: {entry['path']}"
    return None


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal configs hash equally."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
