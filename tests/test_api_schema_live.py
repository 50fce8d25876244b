"""Property-based run over the OpenAPI schema against a live gunicorn.

Schemathesis generates requests from the schema (valid and invalid) for
every operation, plus stateful sequences (create, then read, update,
delete); the server must never answer 5xx and every response must match the
schema.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.support import Gunicorn, committed_tenant

pytestmark = pytest.mark.live


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(tenants, django_db_blocker, tmp_path):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    with django_db_blocker.unblock(), committed_tenant("fuzz") as tenant:
        # The fuzzer sends far more than a free plan's rate; give it room.
        Plan.objects.filter(code="free").update(rate_limit_per_minute=1_000_000)
        owner = User.objects.get(email="owner@fuzz.test")
        token = issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)
        with Gunicorn(workers=2) as server:
            host = {"Host": "fuzz.localhost"}
            schema = requests.get(f"{server.url}/api/v1/schema", headers=host, timeout=10)
            assert schema.status_code == 200
            schema_file = tmp_path / "openapi.yaml"
            schema_file.write_bytes(schema.content)
            result = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", str(schema_file), "--url", server.url,
                 "-H", "Host: fuzz.localhost", "-H", f"Authorization: Bearer {token}",
                 "--checks", "not_a_server_error,response_schema_conformance",
                 "--max-examples", "15", "--seed", "20261127", "--request-timeout", "10", "--workers", "2"],
                capture_output=True, text=True, timeout=300,
            )
            errors = [line for line in server.log_text().splitlines() if '"level": "ERROR"' in line]
        Plan.objects.filter(code="free").update(rate_limit_per_minute=120)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-1000:] + "\n".join(errors[:3])
    assert "passed" in result.stdout
