"""The pipeline's stages. Importing this package registers every stage with the runner's registry."""

from edgekd.stages import bench, distill, evaluate, export, report, select, train_teacher

__all__ = ["bench", "distill", "evaluate", "export", "report", "select", "train_teacher"]
