"""Benchmarks live outside `make test`: `make bench` runs them (see benchmarks/run.py)."""
