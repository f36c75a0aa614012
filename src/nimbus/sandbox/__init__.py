"""Execution environments: isolation backends, the per-version pool (warm reuse, idle reaping), runtimes,
and limits (memory, CPU, pids, /tmp, timeout). Knows nothing of HTTP clients or the database."""
