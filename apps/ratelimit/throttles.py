"""The API's rate limits: per tenant by plan tier, per API key, lower limits
for expensive endpoints, and separate budgets for anonymous callers."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apps.observability import metrics
from apps.tenancy import tenant_cache

from . import buckets
from .clients import address_key
from .selectors import tenant_rate_limit


def _share(per_minute: int, share: float) -> int:
    return max(1, int(per_minute * share))


def request_buckets(request, view, tenant, per_minute: int) -> tuple[list[buckets.Bucket], str]:
    """The buckets a request must pass, and the scope label of its metrics.

    Signed-in callers (user token, API key, session) take from the tenant's
    bucket (the plan's rate), an API key also from its own, and a view with
    ``rate_scope`` (search, exports, bulk) also from that scope's lower
    bucket. Callers without credentials (token exchange, invitation
    acceptance, signed download links) never touch those: they take from
    the tenant's anonymous bucket and from one per client address, so
    whoever knows a tenant's host name cannot spend its members' budget.
    """
    scope = getattr(view, "rate_scope", None)
    if isinstance(scope, dict):  # per method: {"POST": "exports"}
        scope = scope.get(request.method)
    principal = getattr(request, "user", None)
    if not getattr(principal, "is_authenticated", False):
        base = f"anon:t:{tenant.pk}"
        checks = [buckets.Bucket(base, _share(per_minute, settings.RATE_LIMIT_ANON_SHARE)),
                  buckets.Bucket(f"{base}:ip:{address_key(request)}", settings.RATE_LIMIT_ANON_ADDRESS_PER_MINUTE)]
        if scope:
            checks.append(buckets.Bucket(f"{base}:{scope}", _share(per_minute, settings.RATE_LIMIT_SCOPES[scope])))
        return checks, scope or "anonymous"
    checks = [buckets.Bucket(f"t:{tenant.pk}", per_minute)]
    api_key = getattr(principal, "api_key", None)
    if api_key is not None:
        checks.append(buckets.Bucket(f"k:{api_key.pk}", _share(per_minute, settings.RATE_LIMIT_KEY_SHARE)))
    if scope:
        checks.append(buckets.Bucket(f"t:{tenant.pk}:{scope}", _share(per_minute, settings.RATE_LIMIT_SCOPES[scope])))
    return checks, scope or "all"


def _prefetch(request, view):
    """The view's cached entry, read in the rate limit's round trip when the
    view names one (``cache_prefetch``) and the cache lives on the same
    Redis as the buckets."""
    name = getattr(view, "cache_prefetch", None)
    if name is None or settings.CACHES["default"]["LOCATION"] != settings.REDIS_URL:
        return None
    wanted = name(request)
    return tenant_cache.prefetch(*wanted) if wanted else None


class TenantRateThrottle(BaseThrottle):
    """Every bucket of the request is decided at once (buckets.take_all: one
    round trip, all or nothing); the tightest decision is reported in
    RateLimit-* headers."""

    def allow_request(self, request, view) -> bool:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public:
            return True
        plan_code, per_minute = tenant_rate_limit(tenant)
        checks, scope = request_buckets(request, view, tenant, per_minute)
        decision = buckets.tightest(buckets.take_all(checks, piggyback=_prefetch(request, view)))
        request.rate_limit = decision
        if not decision.allowed:
            metrics.rate_limited.labels(tier=plan_code, scope=scope).inc()
            self._wait = decision.retry_after
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
