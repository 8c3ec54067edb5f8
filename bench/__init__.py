"""Benchmarks: personio-sync against the Personio stand-in, next to a naive Celery design.

Run ``.venv/bin/python -m bench.run`` (``--quick`` for a two-minute pass); see bench/README.md.
"""
