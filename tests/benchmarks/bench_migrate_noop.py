"""`manage.py migrate` when nothing is to apply, for many tenants.

    bin/dev bench migrate_noop [COUNT]    (default 300 tenants; missing ones are provisioned first)
"""

import sys
import time
from io import StringIO

from django.core.management import call_command

from apps.tenancy.models import Tenant
from tests.benchmarks._setup import summary
from tests.benchmarks.bench_provisioning import ensure_bench_tenants

if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    ensure_bench_tenants(count)
    tenants = Tenant.objects.exclude(schema_name="public").count()
    runs = []
    for _ in range(5):
        out = StringIO()
        started = time.perf_counter()
        call_command("migrate", stdout=out, verbosity=1)
        runs.append(time.perf_counter() - started)
    print(out.getvalue().strip().splitlines()[-1])
    print(f"no-op migrate (control plane + {tenants} tenant schemas): {summary(runs)}")
