"""ttscli benchmarks: `python -m benchmarks` (or `make bench`) prints a table and one JSON line."""
