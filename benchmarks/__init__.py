"""herdexec's benchmarks: ``python -m benchmarks`` runs them all (see run_all.py and
docs/benchmarks.md); each ``bench_*.py`` also runs on its own."""
