"""Benchmarks of gco-tasks. ``python -m bench.fleet`` measures the fleet's cost per reconcile cycle."""
