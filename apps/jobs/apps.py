from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Kernel: the task base class, retries, dead letters, once-only effects,
    the control-plane outbox, job records, worker presence, unique jobs and
    batches."""

    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # The cache's invalidation sweep is a beat task; caching (tier 0) has
        # no task base, so the task lives here under its old name.
        from . import cache_tasks  # noqa: F401
