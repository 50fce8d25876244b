"""Control-plane tenant registry (public schema)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
# Host labels that would collide with the platform's own names.
RESERVED_SLUGS = frozenset(
    {"www", "api", "admin", "public", "static", "media", "mail", "status", "metrics", "app", "platform"}
)


def validate_slug(value: str) -> None:
    if not SLUG_PATTERN.match(value or "") or "--" in value:
        raise ValidationError(
            "A tenant slug is 3-40 characters: lowercase letters, digits and single hyphens, "
            "starting with a letter and not ending with a hyphen.",
            code="invalid_slug",
        )
    if value in RESERVED_SLUGS:
        raise ValidationError(f"'{value}' is reserved by the platform.", code="reserved_slug")


def schema_name_for_slug(slug: str) -> str:
    # Schema names are prefixed so that a tenant can never be called
    # "public", "pg_catalog" or "information_schema".
    return "t_" + slug.replace("-", "_")


class Shard(models.Model):
    """A PostgreSQL database that holds tenant schemas.

    Logical placement only: ``alias`` names the entry in settings.DATABASES
    that says how to reach it (built from SHARD_URLS).
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"  # takes new tenants, serves reads and writes
        DRAINING = "draining", "Draining"  # serves its tenants, takes no new ones
        READ_ONLY = "read_only", "Read-only"  # serves reads; writes answer 503

    name = models.SlugField(max_length=40, unique=True)
    alias = models.CharField(max_length=60, unique=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    # Relative capacity: placement (apps/tenancy/placement.py) aims at tenant
    # counts and data sizes proportional to weight; 0 takes no new tenants.
    weight = models.PositiveIntegerField(default=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def accepts_writes(self) -> bool:
        return self.state != self.State.READ_ONLY


class Tenant(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    slug = models.SlugField(max_length=40, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    # The tenant's plan, stored here and nowhere else. On the registry row
    # rather than on a billing subscription because the host lookup caches
    # this row: every reader (quotas, the rate limiter's tier, flag targeting,
    # usage) gets the plan id with no query per request, and the plan's
    # limits by id from apps.billing.selectors.plan_of. Changed only through
    # apps.billing.services.subscription_change_plan, which records history.
    # Null only for the platform's own (public) tenant (see Meta.constraints).
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, null=True, blank=True,
                             related_name="tenants")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    # Null only for the platform's own (public) tenant, which has no data schema.
    shard = models.ForeignKey(Shard, on_delete=models.PROTECT, null=True, blank=True, related_name="tenants")
    # A write freeze is a lease, never a bare flag: writes answer 503 with
    # Retry-After until this deadline, which the live mover keeps pushing
    # ahead (apps/fleet/locks.py). A mover that dies stops renewing it, so
    # its tenant opens for writes again within MOVE_LEASE_SECONDS.
    writes_frozen_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # django-tenants would create and drop schemas on the control database;
    # schemas live on shards, so the provisioning service does it instead.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=models.Q(plan__isnull=False) | models.Q(schema_name="public"),
                                   name="tenancy_tenant_has_plan"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_public(self) -> bool:
        return self.schema_name == "public"

    @property
    def is_suspended(self) -> bool:
        return self.status == self.Status.SUSPENDED

    @property
    def writes_frozen(self) -> bool:
        # Read from the (cached) row at request time, so a lapsed lease
        # unfreezes the tenant even before anyone rewrites the row.
        return self.writes_frozen_until is not None and timezone.now() < self.writes_frozen_until

    @property
    def accepts_writes(self) -> bool:
        return not self.writes_frozen and (self.shard is None or self.shard.accepts_writes)


class Domain(DomainMixin):
    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class Move(models.Model):
    """One move of a tenant's schema from one shard to another, as a record.

    Written by the mover at each phase and heartbeat, so an operator (or the
    recovery task) can see where a move stands, resume it or roll it back
    after the mover died. At most one unfinished move per tenant.
    """

    class Phase(models.TextChoices):
        PREPARE = "prepare", "Prepare"  # target schema made and migrated; no freeze
        # locked path: frozen, source locked, rows streamed to the target;
        # logical path: publication + subscription, initial copy, no freeze
        COPY = "copy", "Copy"
        CATCH_UP = "catch_up", "Catch-up"  # logical path: target applying the source's changes; no freeze
        FREEZE = "freeze", "Freeze"  # logical path: frozen, source locked, final catch-up
        VERIFY = "verify", "Verify"  # checksums by key range on both sides
        FLIP = "flip", "Flip"  # source schema renamed away; registry switched
        RETIRE = "retire", "Retire"  # the renamed source copy is dropped
        DONE = "done", "Done"
        ROLLED_BACK = "rolled_back", "Rolled back"

    class Path(models.TextChoices):
        LOGICAL = "logical", "Logical replication"  # copy while writes go on; freeze for the switch only
        LOCKED = "locked", "Locked copy"  # writes frozen for the whole copy

    FINISHED = (Phase.DONE, Phase.ROLLED_BACK)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="moves")
    source = models.ForeignKey(Shard, on_delete=models.PROTECT, related_name="moves_out")
    target = models.ForeignKey(Shard, on_delete=models.PROTECT, related_name="moves_in")
    schema_name = models.CharField(max_length=63)
    # The name the source schema gets at the switch, dropped in retire.
    retired_schema = models.CharField(max_length=63)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.PREPARE)
    path = models.CharField(max_length=10, choices=Path.choices, blank=True)  # chosen in prepare
    rows_copied = models.BigIntegerField(default=0)
    bytes_copied = models.BigIntegerField(default=0)
    # Estimates from the source's statistics when the move began (progress).
    rows_total = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    # Logical path: bytes of source WAL the target had yet to confirm, last seen.
    lag_bytes = models.BigIntegerField(null=True, blank=True)
    freeze_seconds = models.FloatField(null=True, blank=True)
    total_seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    mover = models.CharField(max_length=200, blank=True)  # host:pid of the last process that worked on it
    # Who asked for the move and why (services.move_start); empty for a command run.
    requested_by = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant"], condition=models.Q(finished_at__isnull=True),
                                    name="tenancy_move_one_open_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"move {self.pk} of {self.schema_name}: {self.source_id} -> {self.target_id} ({self.phase})"

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class MigrationRun(models.Model):
    """One `manage.py migrate` over the tenant schemas, with its progress.

    Written by the runner as schemas finish (apps/fleet/migrations_runner.py)
    so that other code (the operator console, an alert) can read how far a
    fleet migration is without its terminal. ``shards`` holds per-shard
    counters: {alias: {total, behind, done, failed, retries, failures: {schema: error}}}.
    A run whose heartbeat stopped without a finish was killed; the next run
    resumes with the schemas still behind and names it in ``resumed_from``.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"  # finished with schemas still behind

    STALE_AFTER_SECONDS = 60

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    runner = models.CharField(max_length=200, blank=True)  # host:pid
    shards = models.JSONField(default=dict)
    resumed_from = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"migration run {self.pk} ({self.state})"

    @property
    def state(self) -> str:
        """The status, or ``interrupted`` for a run whose process died."""
        from datetime import timedelta

        stale = timezone.now() - self.heartbeat_at > timedelta(seconds=self.STALE_AFTER_SECONDS)
        return "interrupted" if self.finished_at is None and stale else self.status

    def total(self, counter: str) -> int:
        return sum(int(shard.get(counter, 0)) for shard in self.shards.values())
