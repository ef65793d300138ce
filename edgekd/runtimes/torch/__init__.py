"""PyTorch (eager) as a runtime: the teacher and student themselves, saved as self-contained ``.pt`` artifacts."""
