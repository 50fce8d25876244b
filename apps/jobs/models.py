"""Control-plane records of the task system."""

from __future__ import annotations

import uuid

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper


class DeadLetter(models.Model):
    """A task that failed for good: kept until an operator replays or discards it."""

    class Status(models.TextChoices):
        DEAD = "dead"
        REPLAYED = "replayed"
        DISCARDED = "discarded"

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64)
    queue = models.CharField(max_length=100, blank=True, default="")
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    tenant_slug = models.CharField(max_length=40, blank=True, default="")
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    headers = models.JSONField(default=dict)
    exception = models.TextField()
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DEAD, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_task_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-last_failed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.tenant_slug or '-'}] {self.exception[:60]}"


class Effect(models.Model):
    """An outside effect (an email sent, say) keyed so that it happens once,
    however often its task runs."""

    key = models.CharField(max_length=200, unique=True)
    task_name = models.CharField(max_length=200, blank=True, default="")
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # The runner doing the effect holds a lease (renewed while it runs), so
    # two redeliveries never run it at once and a runner that died leaves a
    # claim that lapses; the token tells the holder's own claim from a successor's.
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)


class AbstractOutboxMessage(models.Model):
    """A task to send once the transaction that wrote this row commits."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # becomes the task id
    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # A relay that took the row to publish it holds it until then, outside any
    # transaction; if that relay dies the claim lapses and the sweep sends it.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["created_at"]


class OutboxMessage(AbstractOutboxMessage):
    """Outbox of control-plane changes (invitations, ...)."""


class Job(models.Model):
    """One task the platform ran or is to run: what, for which tenant, how far
    it got. Written off the publish path, from events gathered in each
    process (apps/jobs/records.py); ``seq`` orders events that reach the
    table from several processes in any order."""

    class State(models.TextChoices):
        QUEUED = "queued"
        SCHEDULED = "scheduled"
        RUNNING = "running"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DEAD = "dead"
        SKIPPED = "skipped"  # a duplicate of a unique job that ran (apps/jobs/uniqueness.py)
        DISCARDED = "discarded"

    task_id = models.CharField(max_length=64, primary_key=True)
    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=100, blank=True, default="")
    tenant_id = models.BigIntegerField(null=True, blank=True)
    tenant_slug = models.CharField(max_length=40, blank=True, default="")
    state = models.CharField(max_length=12, choices=State.choices)
    seq = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)  # starts, redeliveries included
    eta = models.DateTimeField(null=True, blank=True)  # when it runs next (scheduled, retrying)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    runtime = models.FloatField(null=True, blank=True)  # seconds, of the last attempt
    worker = models.CharField(max_length=200, blank=True, default="")
    # {"args": [...], "kwargs": {...}} as JSON text, redacted (apps/jobs/redaction.py)
    # before it is stored; what the argument search looks in.
    arguments = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")  # of the last attempt that failed
    history = models.JSONField(default=list)  # [{"t", "s", "n", "w", "e"}], the first 40 events
    batch_id = models.UUIDField(null=True, blank=True)
    dead_letter_id = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-task_id"]
        indexes = [
            # The console's and tenant admin's lists: newest first, by state,
            # within a tenant or a task.
            models.Index(fields=["state", "-created_at"], name="jobs_job_state_created"),
            models.Index(fields=["tenant_id", "state", "-created_at"], name="jobs_job_tenant_state"),
            models.Index(fields=["task_name", "state", "-created_at"], name="jobs_job_task_state"),
            models.Index(fields=["-created_at"], name="jobs_job_created"),
            models.Index(fields=["updated_at"], name="jobs_job_updated"),  # the retention purge
            models.Index(fields=["batch_id"], name="jobs_job_batch", condition=models.Q(batch_id__isnull=False)),
            # Argument search: a case-insensitive substring (Django's
            # icontains is UPPER(arguments) LIKE UPPER(...)), three characters
            # or more, served by pg_trgm.
            GinIndex(OpClass(Upper("arguments"), name="gin_trgm_ops"), name="jobs_job_arguments_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.tenant_slug or '-'}] {self.state}"


class JobBatch(models.Model):
    """Jobs sent together, counted as they finish; the callback is sent once
    when the last one has (apps/jobs/batches.py)."""

    class CallbackOn(models.TextChoices):
        COMPLETE = "complete"  # whatever the outcome
        SUCCESS = "success"  # only when no job failed for good

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    total = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    callback = models.CharField(max_length=200, blank=True, default="")
    callback_args = models.JSONField(default=list)
    callback_kwargs = models.JSONField(default=dict)
    callback_on = models.CharField(max_length=10, choices=CallbackOn.choices, default=CallbackOn.COMPLETE)
    callback_message_id = models.UUIDField(null=True, blank=True)  # its control outbox row, and task id
    callback_done_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.succeeded + self.failed}/{self.total})"

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.done / self.total)


class JobBatchCompletion(models.Model):
    """A batch job that finished: counted once, however often it ran."""

    batch = models.ForeignKey(JobBatch, on_delete=models.CASCADE, related_name="completions")
    task_id = models.CharField(max_length=64)
    outcome = models.CharField(max_length=10)  # succeeded, failed, skipped
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "task_id"], name="jobs_batch_completion_once")]


class UniqueClaim(models.Model):
    """A unique job's claim on its key, kept here while Redis does not answer
    (apps/jobs/uniqueness.py)."""

    key = models.CharField(max_length=250, primary_key=True)
    task_id = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)
