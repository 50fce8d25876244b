from django.apps import AppConfig


class RateLimitConfig(AppConfig):
    """Kernel: admission control. Per-tenant and per-key rate limits (token
    buckets in Redis) and per-process load shedding by priority."""

    name = "apps.ratelimit"
    label = "ratelimit"
    verbose_name = "Rate limits"
