"""The schema of a device runner's ``result.json``: nothing fetched back from a device is trusted unchecked.

A result is parsed with these pydantic models (unknown keys, wrong types, non-finite numbers and file names that
leave the run folder are refused) before any figure reaches the manifest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgekd.errors import UserError

MAX_RESULT_BYTES = 4 * 2**20
"""Largest result file accepted (a real one is a few kB)."""


class _Checked(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LatencyStats(_Checked):
    """Milliseconds, as :func:`edgekd.bench.device_runner.summarize` computes them."""

    p50: float = Field(ge=0)
    p90: float = Field(ge=0)
    p95: float = Field(ge=0)
    p99: float = Field(ge=0)
    mean: float = Field(ge=0)
    std: float = Field(ge=0)
    min: float = Field(ge=0)
    max: float = Field(ge=0)
    runs: int = Field(ge=1)
    cv: float = Field(ge=0)
    throughput_per_s: float = Field(ge=0)


class Stability(_Checked):
    cv: float = Field(ge=0)
    threshold: float = Field(gt=0)
    unstable: bool
    note: str = Field(max_length=500)


class BatchResult(_Checked):
    batch_size: int = Field(ge=1)
    latency_ms: LatencyStats
    stability: Stability
    output_shape: list[int]
    energy: dict[str, Any] | str = Field(description="joules, seconds, mean_power_w, mj_per_inference, method; or "
                                         "'energy: not available (why)'")
    runtime_reported_ms: LatencyStats | None = None
    samples_ms: list[float] = Field(default_factory=list, max_length=1000,
                                    description="the timed calls' durations (thinned to 1000), for the CI gate")


class ColdStart(_Checked):
    import_ms: float = Field(ge=0)
    load_ms: float = Field(ge=0)
    first_inference_ms: float = Field(ge=0)
    cold_start_ms: float = Field(ge=0)
    note: str = Field(max_length=500)


class Memory(_Checked):
    peak_rss_mb: float = Field(ge=0)
    method: str = Field(max_length=200)


class Protocol(_Checked):
    warmup_runs: int = Field(ge=0)
    warmup_seconds: float = Field(ge=0)
    runs: int = Field(ge=1)
    min_seconds: float = Field(ge=0)
    max_seconds: float = Field(gt=0)
    cv_threshold: float = Field(gt=0)


class Failure(_Checked):
    kind: Literal["load", "run"]
    message: str = Field(max_length=2000)


class BenchResult(_Checked):
    """A successful run of the device runner."""

    schema_: Literal[1] = Field(alias="schema")
    ok: Literal[True]
    runtime: dict[str, Any]
    batches: list[BatchResult] = Field(min_length=1)
    cold_start: ColdStart
    memory: Memory
    harness_overhead_ms: LatencyStats
    environment: dict[str, Any]
    input: dict[str, Any]
    protocol: Protocol
    files: list[str] = Field(default_factory=list, description="files the runner wrote in its folder")

    @field_validator("files")
    @classmethod
    def _inside(cls, files: list[str]) -> list[str]:
        for name in files:
            safe_name(name)
        return files


class FailedResult(_Checked):
    schema_: Literal[1] = Field(alias="schema")
    ok: Literal[False]
    error: Failure


def safe_name(name: str) -> str:
    """``name`` if it is a plain relative path inside its folder; a ValueError for an absolute path or ``..``."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
        raise ValueError(f"path {name!r} points outside the run folder")
    return name


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def load_result(path: Path, origin: str) -> BenchResult | FailedResult:
    """The checked result in ``path`` (fetched from ``origin``); a UserError naming what is wrong."""
    size = path.stat().st_size
    if size > MAX_RESULT_BYTES:
        raise UserError(f"{origin}: result.json is {size} bytes (limit {MAX_RESULT_BYTES}); refused")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{origin}: result.json is not JSON ({exc})") from None
    if not isinstance(data, dict) or not _finite(data):
        raise UserError(f"{origin}: result.json is not an object of finite numbers")
    try:
        return (BenchResult if data.get("ok") is True else FailedResult).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{origin}: result.json failed its schema at {where or 'top level'}: {first['msg']}") from None
