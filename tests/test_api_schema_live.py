"""Property-based run over the OpenAPI schema against a live gunicorn.

Schemathesis generates requests from the schema (valid and invalid) for
every operation, plus stateful sequences (create, then read, update,
delete), with every check: the server never answers 5xx, every status and
body is documented, schema-valid requests are accepted, invalid ones refused,
deleted objects are gone and created ones are there. It runs for two tenants
at once, one on shard `main` and one on shard `b` (when configured), each with
its owner's token; tests/schemathesis.toml holds the few statements the schema
cannot make.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack

import pytest
import requests

from tests.support import ROOT, Gunicorn, committed_tenant

pytestmark = pytest.mark.live

SEED = "20261127"
# Small enough that both tenants' runs end within about two minutes on two cores.
MAX_EXAMPLES = "10"


def schemathesis_run(schema_file, url: str, host: str, token: str, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
         "run", str(schema_file), "--url", url, "-H", f"Host: {host}", "-H", f"Authorization: Bearer {token}",
         "--checks", "all", "--max-examples", MAX_EXAMPLES, "--seed", SEED, "--generation-database", "none",
         "--request-timeout", "10", "--workers", "1", "--no-color"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
    )


def test_schemathesis_with_all_checks_is_clean_on_two_shards(tenants, django_db_blocker, tmp_path):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan
    from apps.tenancy import planes

    other_shard = "b" if "shard_b" in planes.shard_aliases() else "main"
    with django_db_blocker.unblock(), ExitStack() as stack:
        made = {slug: stack.enter_context(committed_tenant(slug, shard=shard))
                for slug, shard in [("fuzz", "main"), ("fuzzb", other_shard)]}
        # The fuzzer sends far more than a free plan's rate; give it room.
        limit = Plan.objects.get(code="free").rate_limit_per_minute
        Plan.objects.filter(code="free").update(rate_limit_per_minute=1_000_000)
        stack.callback(lambda: Plan.objects.filter(code="free").update(rate_limit_per_minute=limit))
        server = stack.enter_context(Gunicorn(workers=2))
        runs = {}
        for slug, tenant in made.items():
            owner = User.objects.get(email=f"owner@{slug}.test")
            token = issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)
            host = f"{slug}.localhost"
            schema = requests.get(f"{server.url}/api/v1/schema", headers={"Host": host}, timeout=10)
            assert schema.status_code == 200, schema.text[:500]
            workdir = tmp_path / slug
            workdir.mkdir()
            (workdir / "openapi.yaml").write_bytes(schema.content)
            runs[slug] = schemathesis_run(workdir / "openapi.yaml", server.url, host, token, workdir)
        outputs = {}
        for slug, run in runs.items():
            try:
                outputs[slug] = run.communicate(timeout=240)[0]
            except subprocess.TimeoutExpired:
                run.kill()
                outputs[slug] = run.communicate()[0] + "\n(timed out)"
            (tmp_path / slug / "schemathesis.txt").write_text(outputs[slug])  # the whole report, for reading
        errors = [line for line in server.log_text().splitlines() if '"level": "ERROR"' in line]
    for slug, run in runs.items():
        assert run.returncode == 0, f"{slug}:\n" + outputs[slug][-6000:] + "\n".join(errors[:3])
        assert "passed" in outputs[slug]
