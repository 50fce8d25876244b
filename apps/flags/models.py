"""Feature flags (control plane): per tenant, per plan, or a stable
percentage of tenants; changed at runtime in the operator admin."""

from __future__ import annotations

from django.core.validators import MaxValueValidator
from django.db import models


class Flag(models.Model):
    key = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True, default="")
    # The kill switch: off means off for every tenant, whatever else is set.
    enabled = models.BooleanField(default=False)
    everyone = models.BooleanField(default=False)
    # A stable share of tenants: each tenant's bucket is a hash of (flag, tenant),
    # so raising 10 -> 20 keeps the first 10% on and adds another 10%.
    percentage = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    plans = models.JSONField(default=list, blank=True, help_text='plan codes, e.g. ["pro", "enterprise"]')
    tenants = models.ManyToManyField("tenancy.Tenant", blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
