"""Benchmarks: the engine alone (bench.engine) and the Wyoming servers (bench.server)."""
