"""The API's rate limits: per tenant by plan tier, per API key, and lower
limits for expensive endpoints."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apps.observability import metrics

from . import buckets
from .selectors import tenant_rate_limit


class TenantRateThrottle(BaseThrottle):
    """Every API request takes a token from its tenant's bucket (the plan's
    requests per minute) and, for API keys, from the key's own bucket; a view
    with ``rate_scope`` (search, exports, bulk) also from that scope's lower
    bucket. The tightest decision is reported in RateLimit-* headers."""

    def allow_request(self, request, view) -> bool:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public:
            return True
        plan_code, per_minute = tenant_rate_limit(tenant)
        checks = [(f"t:{tenant.pk}", per_minute)]
        principal = getattr(request, "user", None)
        api_key = getattr(principal, "api_key", None)
        if api_key is not None:
            checks.append((f"k:{api_key.pk}", max(1, int(per_minute * settings.RATE_LIMIT_KEY_SHARE))))
        scope = getattr(view, "rate_scope", None)
        if isinstance(scope, dict):  # per method: {"POST": "exports"}
            scope = scope.get(request.method)
        if scope:
            checks.append((f"t:{tenant.pk}:{scope}", max(1, int(per_minute * settings.RATE_LIMIT_SCOPES[scope]))))
        decisions = []
        for key, limit in checks:
            decision = buckets.take(key, per_minute=limit)
            decisions.append(decision)
            if not decision.allowed:
                break
        tightest = min(decisions, key=lambda d: (d.allowed, d.remaining))
        request.rate_limit = tightest
        if not tightest.allowed:
            metrics.rate_limited.labels(tier=plan_code, scope=scope or "all").inc()
            self._wait = tightest.retry_after
            return False
        return True

    def wait(self):
        return getattr(self, "_wait", None)


def rate_limit_headers(request, response) -> None:
    decision = getattr(request, "rate_limit", None)
    if decision is None:
        return
    response["RateLimit-Limit"] = str(decision.limit)
    response["RateLimit-Remaining"] = str(decision.remaining)
    response["RateLimit-Reset"] = str(decision.reset_seconds)
    response["RateLimit-Policy"] = f'{decision.limit};w=60'
    if not decision.allowed:
        response["Retry-After"] = str(decision.retry_after)
