"""Rate limits and metrics through a real gunicorn (2 workers x 8 threads)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import Gunicorn, committed_tenant

pytestmark = pytest.mark.live


def test_parallel_clients_get_exactly_the_plan_limit_then_metrics_show_it(tenants, django_db_blocker):
    from apps.accounts.models import User
    from apps.accounts.tokens import issue_user_token
    from apps.billing.models import Plan

    with django_db_blocker.unblock(), committed_tenant("limited") as tenant:
        Plan.objects.filter(code="free").update(rate_limit_per_minute=10)
        try:
            owner = User.objects.get(email="owner@limited.test")
            headers = {"Host": "limited.localhost",
                       "Authorization": f"Bearer {issue_user_token(user_id=owner.pk, tenant_id=tenant.pk)}"}
            with Gunicorn(workers=2) as server:
                with ThreadPoolExecutor(max_workers=20) as pool:
                    statuses = list(pool.map(
                        lambda _: requests.get(f"{server.url}/api/v1/me", headers=headers, timeout=10).status_code,
                        range(40)))
                metrics = requests.get(f"{server.ops_url}/metrics", timeout=10).text
        finally:
            Plan.objects.filter(code="free").update(rate_limit_per_minute=120)
    # 40 requests from 20 parallel clients over two processes: one shared,
    # atomic bucket (refill during the burst: 10/min, well under one token).
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    refused = re.search(r'^saas_rate_limited_total\{scope="all",tier="free"\} (\S+)$', metrics, re.MULTILINE)
    assert refused and float(refused.group(1)) == 30
