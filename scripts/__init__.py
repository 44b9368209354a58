"""Project scripts; a package so tests and benchmarks can import ``scripts.team``."""
