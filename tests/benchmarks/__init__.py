"""Benchmarks: run with `bin/dev bench NAME`; each prints its figures.

They run against their own database (saas_bench), never inside the test
suite: timings are shown, not asserted. Importing this package sets Django up,
so a benchmark module can import models at the top.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django.setup()
