"""Benchmarks of starlette-session against Starlette's SessionMiddleware and its peers.

Run everything with ``bash scripts/bench.sh``; see ``docs/benchmarks.md``.
"""
