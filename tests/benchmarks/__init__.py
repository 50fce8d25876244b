"""Benchmarks: run with `bin/dev bench NAME`; each prints its figures.

They run against their own database (saas_bench), never inside the test
suite: timings are shown, not asserted.
"""
