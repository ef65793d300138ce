"""Human summary of a run: report.md, report.html and plots, built from the run directory alone."""

from edgekd.report.build import write_report

__all__ = ["write_report"]
