"""Stage runner, run directory, manifest, content hashing, caching and resume."""
