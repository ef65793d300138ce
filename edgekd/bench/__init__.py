"""Latency measurement: warm-up, timed runs, percentile statistics."""
