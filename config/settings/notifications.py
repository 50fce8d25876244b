"""Email: the SMTP connection, the circuit breaker around it, links in emails."""

from __future__ import annotations

from .environment import env, env_bool, env_int

# --- email -----------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1, unit="seconds")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "SaaS Platform <no-reply@saas-platform.dev>")
# Circuit breaker around the email provider: open after this many failures in
# a row, probe again after this many seconds.
EMAIL_BREAKER_FAIL_MAX = env_int("EMAIL_BREAKER_FAIL_MAX", 5, minimum=1)
EMAIL_BREAKER_RESET_SECONDS = env_int("EMAIL_BREAKER_RESET_SECONDS", 60, minimum=1, unit="seconds")
EMAIL_MAX_RETRIES = env_int("EMAIL_MAX_RETRIES", 8, minimum=0)
BREAKER_NAMESPACE = env("BREAKER_NAMESPACE", "breaker")
# Links in emails (invitations, password resets, export downloads): scheme,
# host and port as people reach a tenant; {host} is the tenant's primary host.
TENANT_BASE_URL = env("TENANT_BASE_URL", "https://{host}")
