"""Secrets, hosts, sessions, account credentials and browser-page headers."""

from __future__ import annotations

from .environment import env, env_bool, env_int, env_list

SECRET_KEY = env("DJANGO_SECRET_KEY", "insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
# Earlier secret keys, still accepted for signatures and tokens while a new key rolls out.
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", "")

# Tenants live at <slug>.<PLATFORM_DOMAIN>; the bare domain is the operators'
# (public) host.
PLATFORM_DOMAIN = env("PLATFORM_DOMAIN", "localhost")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", f"{PLATFORM_DOMAIN},.{PLATFORM_DOMAIN}")

# Sessions are control-plane rows; a session cookie is scoped to the host that
# issued it, and tenant admin access is re-checked against memberships.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Content-Security-Policy of the pages a browser renders: admin sites, API docs, invitations, passwords.
CONTENT_SECURITY_POLICY = env("CONTENT_SECURITY_POLICY", "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    # The admin and Swagger UI set a few style attributes and <style> blocks.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]))

# --- accounts -------------------------------------------------------------
USER_TOKEN_SECONDS = env_int("USER_TOKEN_SECONDS", 12 * 3600, minimum=1, unit="seconds")
INVITATION_SECONDS = env_int("INVITATION_SECONDS", 7 * 24 * 3600, minimum=1, unit="seconds")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600, minimum=60, unit="seconds")
