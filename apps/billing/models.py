"""Plans, quotas and the history of plan changes (control plane)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Plan(models.Model):
    code = models.SlugField(max_length=30, unique=True)  # flags and the API name plans by code
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(unique=True)  # upgrade order
    max_documents = models.PositiveIntegerField()
    max_events_per_month = models.PositiveIntegerField()
    max_seats = models.PositiveIntegerField()
    max_api_keys = models.PositiveIntegerField()
    # Requests per minute per tenant; the rate limiter reads it (no restart
    # needed when a tenant changes plan).
    rate_limit_per_minute = models.PositiveIntegerField()
    # Tasks of one tenant that run at once per queue; more wait, parked, so
    # one tenant's flood cannot hold back the others (apps/jobs/fairness.py).
    # 0: no limit.
    task_concurrency = models.PositiveSmallIntegerField(
        default=2, help_text="Tasks of one tenant running at once per queue (0: no limit).")

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class PlanChange(models.Model):
    """History of a tenant's plan: one row per change. Never read to decide
    the current plan, which lives on the tenant (``Tenant.plan``) alone."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="plan_changes")
    from_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    source = models.CharField(max_length=40, blank=True, default="")  # admin, command, migration, ...

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.from_plan_id} -> {self.to_plan_id}"


QUOTA_FIELDS = {
    "documents": "max_documents",
    "events_per_month": "max_events_per_month",
    "seats": "max_seats",
    "api_keys": "max_api_keys",
}
