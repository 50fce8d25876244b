from django.apps import AppConfig


class RateLimitConfig(AppConfig):
    """Kernel: admission control. Per-tenant, per-key and anonymous rate
    limits (token buckets in Redis), password-attempt lockouts, and
    per-process load shedding by priority."""

    name = "apps.ratelimit"
    label = "ratelimit"
    verbose_name = "Rate limits"

    def ready(self):
        from apps.caching import local

        from . import signals  # noqa: F401  (plan edits refresh the limits held in process)
        from .selectors import PLANS_SCOPE

        local.register_shared_scope(PLANS_SCOPE)
        from .clients import trusted_networks

        trusted_networks()  # a mistyped TRUSTED_PROXIES stops the process at start, not each request
