"""Benchmarks and measuring scripts (figures in BENCHMARKS.md); not run by default."""
