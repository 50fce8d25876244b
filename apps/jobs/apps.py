from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Kernel: the task base class, retries, dead letters, once-only effects,
    and the control-plane outbox."""

    name = "apps.jobs"
    label = "jobs"
    verbose_name = "Jobs"
