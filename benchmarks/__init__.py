"""Benchmarks of oupsish against raw pyarrow: run ``python benchmarks/run.py --quick``."""
