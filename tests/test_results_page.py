"""docs/results.md is generated from results/*.json: the committed page must equal the generator's output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_page  # noqa: E402
from records import read_records  # noqa: E402


def test_committed_results_page_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "results.md").read_text()
    assert committed == results_page.page(read_records(ROOT / "results")), (
        "docs/results.md is out of date: run python benchmarks/results_page.py")


def test_check_fails_when_a_record_changes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    page = tmp_path / "results.md"
    script = [sys.executable, str(ROOT / "benchmarks" / "results_page.py"), "--results", str(results),
              "--output", str(page)]
    assert subprocess.run(script, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([*script, "--check"], capture_output=True, timeout=60).returncode == 0
    record_file = sorted(results.glob("*.json"))[0]
    record = json.loads(record_file.read_text())
    record["figures"]["edited"] = 1
    record_file.write_text(json.dumps(record))
    stale = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr


RECORD: dict[str, Any] = {
    "name": "toy", "title": "A toy record", "command": "python benchmarks/toy.py --n 3", "commit": "abc123",
    "dirty": True, "date": "2026-01-02T03:04:05+00:00",
    "machine": {"cpu": "Some CPU", "flags": ["avx2", "fma"], "cores": 2, "memory_gib": 7.5, "python": "3.11.7"},
    "figures": {"wall_seconds": 12.5, "ok": True, "seeds": [0, 1],
                "artifacts": {"a": {"bytes": 10, "p50_ms": 0.12350109999999999},
                              "b": {"bytes": 20, "status": "failed: x|<y>"}},
                "runs": [{"seed": 0, "acc": 0.5}, {"seed": 1, "acc": 0.75}],
                "deep": {"level": {"x": {"y": 1}}, "n": 2}},
    "notes": "measured twice",
}

EXPECTED = """<a id="toy"></a>

## A toy record

- record: `results/toy.json`
- command: `python benchmarks/toy.py --n 3`
- commit: `abc123 (with uncommitted changes)`
- machine: Some CPU, 2 cores, 7.5 GiB, flags avx2 fma, Python 3.11.7
- date: 2026-01-02T03:04:05+00:00
- notes: measured twice

| figure | value |
|---|---|
| wall_seconds | 12.5 |
| ok | true |
| seeds | 0, 1 |

### artifacts

|  | bytes | p50_ms | status |
|---|---|---|---|
| a | 10 | 0.123501 |  |
| b | 20 |  | failed: x\\|&lt;y&gt; |

### runs

| seed | acc |
|---|---|
| 0 | 0.5 |
| 1 | 0.75 |

### deep

| figure | value |
|---|---|
| n | 2 |

#### level

|  | y |
|---|---|
| x | 1 |
"""


def test_a_record_renders_as_written_by_hand() -> None:
    assert "\n".join(results_page.section(RECORD)).rstrip() + "\n" == EXPECTED


@pytest.mark.parametrize("name", [r["name"] for r in read_records(ROOT / "results")])
def test_every_record_has_its_provenance(name: str) -> None:
    record = json.loads((ROOT / "results" / f"{name}.json").read_text())
    assert record["name"] == name
    for key in ("title", "command", "commit", "date", "machine", "figures"):
        assert record.get(key), f"results/{name}.json: no {key}"
    assert record["machine"].get("cpu") and record["machine"].get("cores")
