"""The pipeline's stages. Importing this package registers every stage with the runner's registry."""

from edgekd.stages import (
                           ablation,
                           assistant,
                           bench,
                           distill,
                           evaluate,
                           export,
                           prune,
                           quantize,
                           report,
                           select,
                           train_teacher,
)

__all__ = ["ablation", "assistant", "bench", "distill", "evaluate", "export", "prune", "quantize", "report",
           "select", "train_teacher"]
