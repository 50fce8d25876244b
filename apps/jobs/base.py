"""The base class of every platform task.

* Tenant context: a task with ``tenant_scoped = True`` carries the tenant id
  (and the request id that caused it) in its message headers. Enqueueing one
  with no tenant active fails at once; the worker activates the tenant's
  shard and schema before the body and deactivates it after.
* Retries: temporary failures (RetryLater, database/network errors) retry
  with exponential backoff and full jitter up to ``max_retries``; anything
  else, and a temporary failure after the last attempt, is a dead letter.
"""

from __future__ import annotations

import logging

from celery import Task
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from apps.observability.context import request_id_var, tenant_var, user_var
from apps.tenancy.context import NoActiveTenant, active_tenant

from .errors import PermanentError, RetryLater

logger = logging.getLogger(__name__)

TEMPORARY_ERRORS = (RetryLater, OperationalError, InterfaceError, ConnectionError, TimeoutError)
FIRST_FAILURE_KEY = "jobs:first-failure:{}"


class PlatformTask(Task):
    abstract = True
    tenant_scoped = False
    autoretry_for = TEMPORARY_ERRORS
    dont_autoretry_for = (PermanentError,)
    max_retries = 5
    retry_backoff = 2  # seconds, doubled per attempt...
    retry_backoff_max = 600  # ...up to ten minutes,
    retry_jitter = True  # with full jitter: a random delay in [0, backoff]

    # --- producer side ---------------------------------------------------

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        headers = dict(options.pop("headers", None) or {})
        headers.setdefault("request_id", request_id_var.get())
        headers.setdefault("user_id", user_var.get())
        if self.tenant_scoped and not headers.get("tenant_id"):
            tenant = active_tenant()
            if tenant is None:
                raise NoActiveTenant(f"{self.name} is a tenant task; enqueue it with a tenant active.")
            headers.update(tenant_id=tenant.pk, tenant_slug=tenant.slug)
        return super().apply_async(args, kwargs, task_id=task_id, producer=producer, link=link,
                                   link_error=link_error, shadow=shadow, headers=headers, **options)

    # --- worker side -----------------------------------------------------

    def header(self, name: str):
        value = getattr(self.request, name, None)
        if value is None:
            value = (getattr(self.request, "headers", None) or {}).get(name)
        return value

    def __call__(self, *args, **kwargs):
        request_token = request_id_var.set(self.header("request_id"))
        user_token = user_var.set(self.header("user_id"))
        try:
            if not self.tenant_scoped:
                return super().__call__(*args, **kwargs)
            from apps.tenancy.activation import tenant_activated
            from apps.tenancy.models import Tenant

            tenant_id = self.header("tenant_id")
            tenant = Tenant.objects.select_related("shard").filter(pk=tenant_id).first() if tenant_id else None
            if tenant is None or tenant.shard is None:
                raise PermanentError(f"{self.name}: no tenant {tenant_id!r} to run for")
            with tenant_activated(tenant):
                return super().__call__(*args, **kwargs)
        finally:
            request_id_var.reset(request_token)
            user_var.reset(user_token)
            tenant_var.set(None)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        cache.add(FIRST_FAILURE_KEY.format(task_id), timezone.now(), timeout=7 * 24 * 3600)
        logger.warning("task retry", extra={"task": self.name, "task_id": task_id, "error": str(exc)[:200],
                                             "attempt": self.request.retries + 1})

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from .services import dead_letter_record

        first = cache.get(FIRST_FAILURE_KEY.format(task_id))
        dead_letter_record(
            task_name=self.name, task_id=task_id, args=list(args or []), kwargs=dict(kwargs or {}),
            headers={k: self.header(k) for k in ("tenant_id", "tenant_slug", "request_id", "user_id") if self.header(k)},
            queue=(getattr(self.request, "delivery_info", None) or {}).get("routing_key") or "",
            exception=f"{type(exc).__name__}: {exc}", traceback=str(einfo or ""),
            attempts=self.request.retries + 1, first_failed_at=first,
        )
        cache.delete(FIRST_FAILURE_KEY.format(task_id))


class TenantTask(PlatformTask):
    abstract = True
    tenant_scoped = True
