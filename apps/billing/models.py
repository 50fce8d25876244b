"""Plans, quotas and subscriptions (control plane)."""

from __future__ import annotations

from django.db import models


class Plan(models.Model):
    code = models.SlugField(max_length=30, unique=True)  # matches Tenant.plan
    name = models.CharField(max_length=100)
    rank = models.PositiveSmallIntegerField(unique=True)  # upgrade order
    max_documents = models.PositiveIntegerField()
    max_events_per_month = models.PositiveIntegerField()
    max_seats = models.PositiveIntegerField()
    max_api_keys = models.PositiveIntegerField()
    # Requests per minute per tenant; the rate limiter reads it (no restart
    # needed when a tenant changes plan).
    rate_limit_per_minute = models.PositiveIntegerField()

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    tenant = models.OneToOneField("tenancy.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    started_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.plan.code}"


QUOTA_FIELDS = {
    "documents": "max_documents",
    "events_per_month": "max_events_per_month",
    "seats": "max_seats",
    "api_keys": "max_api_keys",
}
