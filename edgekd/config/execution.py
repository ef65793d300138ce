"""Where independent sub-runs (ablation sub-runs, assistant candidates, LayerMerge importance entries, device
benches) run: the recipe's ``execution:`` section.

    execution:
      backend: auto          # ray when installed, else sequential
      address: null          # null: a local Ray started in-process; "auto" or "HOST:PORT": an existing cluster
      threads_per_task: 1    # torch threads inside each task, and the CPUs each task reserves
      gpus_per_task: 0
      max_retries: 3         # times a task is re-run after its worker process died

Results do not depend on the backend: every task runs with ``threads_per_task`` torch threads, sequentially too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from edgekd.config._base import Strict


class ExecutionConfig(Strict):
    """How the independent sub-runs of a stage are scheduled (not part of any cache key: results are the same)."""

    backend: Literal["auto", "ray", "sequential"] = Field(
        "auto", description="auto: Ray when installed, else sequential; ray: Ray or an error; sequential: in-process")
    address: str | None = Field(
        None, description="Ray cluster to join ('auto' or HOST:PORT); null: $RAY_ADDRESS, else a local Ray")
    threads_per_task: PositiveInt = Field(1, description="torch threads of each task (and CPUs it reserves)")
    gpus_per_task: NonNegativeFloat = Field(0.0, description="GPUs each task reserves (fractions share one)")
    max_retries: NonNegativeInt = Field(3, description="re-runs of a task whose worker process died")
