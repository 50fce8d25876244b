"""Production: secrets must come from the environment; HTTPS everywhere."""

from .base import *  # noqa: F403
from .base import WEBHOOKS_ALLOW_HTTP, WEBHOOKS_ALLOW_LOOPBACK, env_bool, env_int
from .environment import require

# Each of these has a default that points at this machine (a local database,
# Redis, mail catcher, `localhost` hosts) or is a known development key; in
# production that default would start a process that serves nobody or leaks
# sessions, so the process refuses to start and names every one not set.
REQUIRED_VARIABLES = [
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "PLATFORM_DOMAIN",
    "DATABASE_URL",
    "REDIS_URL",
    "EMAIL_HOST",
    "EMAIL_PORT",
]
require(REQUIRED_VARIABLES, why="production settings need these environment variables")

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 30 * 24 * 3600, minimum=0, unit="seconds")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# TLS ends at the load balancer, which redirects HTTP; probes reach pods over
# plain HTTP, so the app itself does not redirect.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Preloading HSTS is a one-way commitment of the whole domain: opt in per deployment.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = ["security.W008", "security.W021"]

# Webhooks go to public https addresses only. The switches that let tests and
# a developer's machine reach a loopback receiver over http must never be on
# here: a tenant could otherwise aim deliveries at the pod's own services.
if WEBHOOKS_ALLOW_LOOPBACK or WEBHOOKS_ALLOW_HTTP:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("WEBHOOKS_ALLOW_LOOPBACK and WEBHOOKS_ALLOW_HTTP must be off in production")
