"""Benchmarks of tpv against the reference pipelines; `python -m benchmarks.throughput`."""
