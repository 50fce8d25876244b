"""Resolve the tenant from the Host header and activate it on its shard."""

from __future__ import annotations

import hashlib
import logging
import time

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import OperationalError, ProgrammingError
from django.http import HttpRequest, HttpResponse
from django.urls import set_urlconf

from apps.caching import local, pushed, versioned
from apps.http.problems import problem_response
from apps.observability.context import tenant_var

from . import planes, replicas, tenant_cache
from .activation import activate, deactivate
from .context import pin_primary, primary_pinned, wrote_var
from .selectors import resolve_host

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FROZEN_RETRY_AFTER_SECONDS = 30
SHARD_DOWN_RETRY_AFTER_SECONDS = 10
# Set on a request whose view failed on one copy of its shard and is to be
# run again on the other; then "done", so a request is re-run at most once.
RERUN_ATTR = "_tenancy_rerun"


def client_key(request: HttpRequest) -> str | None:
    """A stable, non-secret id for the caller: its credentials, hashed.

    Taken from the Authorization header or the session cookie, so it is known
    before authentication runs (DRF authenticates inside the view).
    """
    credential = request.headers.get("Authorization") or request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not credential:
        return None
    return hashlib.sha256(credential.encode()).hexdigest()[:24]


def read_your_writes_key(tenant_id: int, client: str) -> str:
    """A client's mark after a write: its value is the time (epoch seconds)
    until which its reads go to the primary. Under the watched prefix, so
    processes hold it (or its absence) and Redis pushes its changes."""
    return f"{pushed.watched_prefix()}ryw:{tenant_id}:{client}"


def _seconds_left(mark: str | None) -> float:
    try:
        return float(mark) - time.time() if mark else 0.0
    except ValueError:
        return 0.0


def reads_may_use_replica(tenant) -> bool:
    return settings.REPLICA_READS and planes.replica_alias(tenant.shard.alias) is not None


MISSING_RELATION_STATES = frozenset({"42P01", "3F000"})  # undefined_table, invalid_schema_name


def _moving(tenant, exception: ProgrammingError) -> bool:
    """Did the request meet a tenant whose schema a move is switching?"""
    cause = getattr(exception, "__cause__", None)
    if getattr(cause, "sqlstate", None) not in MISSING_RELATION_STATES:
        return False
    from .models import Move

    return Move.objects.filter(tenant_id=tenant.pk, finished_at__isnull=True).exists()


def unavailable(detail: str, retry_after: int, code: str) -> HttpResponse:
    return problem_response(
        503, code=code, title="Temporarily unavailable", detail=detail, headers={"Retry-After": str(retry_after)}
    )


class TenantMiddleware:
    """Hostname -> tenant (cached), then activate it on its shard.

    Written instead of subclassing django-tenants' TenantMainMiddleware: the
    platform needs JSON errors, a cached lookup, per-shard activation (the
    library knows a single database), write freezes and read-your-writes, and
    a reset after the response so nothing of this request's tenant survives
    on the worker's connections into the next.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            hostname = request.get_host().rsplit(":", 1)[0].lower()
        except DisallowedHost:
            return problem_response(400, code="invalid-host", detail="This host name is not served by the platform.")

        # One Redis round trip: the host's tenant, and for the tenant this
        # process last saw there its access version (principals held in
        # process are checked against it), the shared scopes' versions
        # (plans) and this client's read-your-writes mark. A host that
        # changed tenants reads those later.
        credentials = client_key(request)

        def extra_keys(tenant_id: int) -> tuple[list[str], list[str]]:
            plain = [read_your_writes_key(tenant_id, credentials)] if credentials else []
            return [local.access_version_key(tenant_id), *local.shared_version_keys()], plain

        tenant, extra = resolve_host(hostname, extra_keys)
        if tenant is None:
            return problem_response(404, code="unknown-tenant", detail=f"No tenant is served at '{hostname}'.")
        if tenant.is_suspended:
            return problem_response(
                403,
                code="tenant-suspended",
                title="Tenant suspended",
                detail=f"The tenant '{tenant.slug}' is suspended. Contact the platform operators to restore access.",
            )
        request.tenant = tenant
        tenant.domain_url = hostname
        if tenant.is_public:
            tenant_var.set(None)
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            set_urlconf(request.urlconf)
            try:
                return self.get_response(request)
            finally:
                set_urlconf(None)

        if tenant.shard is None or tenant.shard.alias not in settings.DATABASES:
            logger.error("tenant shard not configured", extra={"shard": getattr(tenant.shard, "alias", None)})
            return unavailable("This tenant's data store is not reachable from here.", 60, "shard-unavailable")
        if request.method not in SAFE_METHODS and not tenant.accepts_writes:
            return unavailable(
                "This tenant is being maintained; reading works, writing is paused for a moment.",
                FROZEN_RETRY_AFTER_SECONDS,
                "writes-frozen",
            )

        tokens = activate(tenant)
        versions_token = local.request_versions.set({k: v for k, v in extra.items() if v is not None})
        prefetch_token = tenant_cache.request_scope()
        # Read-your-writes across requests only matters where reads could go
        # to a replica; elsewhere it is not even looked at.
        client = credentials if reads_may_use_replica(tenant) else None
        if client:
            ryw_key = read_your_writes_key(tenant.pk, client)
            mark = extra[ryw_key] if ryw_key in extra else versioned.get_plain(ryw_key)
            remaining = _seconds_left(mark)
            if remaining > 0:
                pin_primary(remaining)
        try:
            response = self.get_response(request)
            if getattr(request, RERUN_ATTR, None) == "pending":
                setattr(request, RERUN_ATTR, "done")
                response = self.get_response(request)
            if client and wrote_var.get():
                seconds = settings.READ_YOUR_WRITES_SECONDS
                versioned.set_plain(read_your_writes_key(tenant.pk, client), f"{time.time() + seconds:.3f}", seconds)
            return response
        finally:
            tenant_cache.end_request_scope(prefetch_token)
            local.request_versions.reset(versions_token)
            deactivate(tenant, tokens, keep_log_context=True)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        tenant = getattr(request, "tenant", None)
        if isinstance(exception, ProgrammingError) and tenant is not None and _moving(tenant, exception):
            # Between a move's switch of the source schema and the registry
            # flip, the tenant's tables are briefly not where this request
            # looked: the move is under way, so "try again shortly", not a 500.
            logger.warning("tenant schema moved under a request", extra={"error": str(exception)[:200]})
            return unavailable(f"Tenant '{tenant.slug}' is being moved; try again in a moment.",
                               FROZEN_RETRY_AFTER_SECONDS, "tenant-moving")
        if isinstance(exception, OperationalError) and tenant is not None and tenant.shard is not None:
            other_copy = self._copy_to_rerun_on(request, tenant, exception)
            logger.warning("tenant shard unavailable", extra={
                "shard": tenant.shard.name, "alias": getattr(exception, "db_alias", None),
                "rerun_on": other_copy, "error": str(exception)[:200]})
            if other_copy:
                setattr(request, RERUN_ATTR, "pending")
            # With a re-run pending, __call__ replaces this response; the
            # middleware inside still sees a 5xx (no session saved for it).
            return unavailable(
                f"The data store of tenant '{tenant.slug}' is unavailable. Try again shortly.",
                SHARD_DOWN_RETRY_AFTER_SECONDS,
                "shard-unavailable",
            )
        return None

    @staticmethod
    def _copy_to_rerun_on(request: HttpRequest, tenant, exception: OperationalError) -> str | None:
        """The other copy of the shard to run a failed read-only request on, if any.

        The retry is here, around the whole view, and not in the database
        backend: a connection can fail at connect or under a query of an open
        session, and in the second case the view may already hold rows from
        the failed copy; running it again on the other copy gives one
        consistent answer for both cases. Only safe methods that wrote no
        tenant data are run again, and only once.
        """
        if request.method not in SAFE_METHODS or wrote_var.get() or getattr(request, RERUN_ATTR, None):
            return None
        failed = getattr(exception, "db_alias", None)
        if failed is None or not replicas.is_connection_failure(exception):
            return None
        primary = tenant.shard.alias
        replica = planes.replica_alias(primary)
        if replica is None:
            return None
        if failed == replica:
            # The replica is dropped from reads (the backend marked it); pin
            # this request to the primary as well, whatever the next check says.
            pin_primary(settings.READ_YOUR_WRITES_SECONDS)
            return primary
        if failed == primary and reads_may_use_replica(tenant) and replicas.presumed_down(primary) \
                and not primary_pinned():
            # The router reads from the replica while the primary is presumed
            # down; a client inside its read-your-writes window keeps its 503.
            return replica
        return None
