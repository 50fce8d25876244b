"""A bare single-file Django app: the yardstick of bench_ratios.

    BARE_DATABASE_URL=postgres://... gunicorn --chdir tests/benchmarks/bare bare_app:application

A top-level module (run from its directory), not tests.benchmarks.bare.*:
that package sets the platform's Django up on import. Django with nothing of
the platform: no middleware, no tenancy, no auth, one
database. ``/json`` answers a small JSON object; ``/db`` reads one row by
primary key from ``bare_row`` in the same PostgreSQL server the platform
uses. Connections persist (CONN_MAX_AGE) as the platform's do, so ``/db``
measures a query, not a connect. Standard library, Django and psycopg only:
this module must not import the platform.
"""

import os
import sys
from urllib.parse import unquote, urlsplit

from django.conf import settings

_url = urlsplit(os.environ.get("BARE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))

# BARE_MIDDLEWARE=django: the middleware a new project gets from startproject
# (a second yardstick: how much of a gap Django's own standard stack is).
STANDARD_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
_standard = os.environ.get("BARE_MIDDLEWARE", "none") == "django"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="bare-benchmark-only",
        ROOT_URLCONF=__name__,
        MIDDLEWARE=STANDARD_MIDDLEWARE if _standard else [],
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                        "django.contrib.messages"] if _standard else [],
        USE_TZ=True,
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": _url.path.lstrip("/"),
                "USER": unquote(_url.username or ""),
                "PASSWORD": unquote(_url.password or ""),
                "HOST": unquote(_url.hostname or ""),
                "PORT": _url.port or "",
                "CONN_MAX_AGE": int(os.environ.get("BARE_CONN_MAX_AGE", "60")),
            }
        },
    )

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import Http404, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

TABLE_SQL = "CREATE TABLE IF NOT EXISTS bare_row (id integer PRIMARY KEY, title text NOT NULL, body text NOT NULL)"


def json_view(request):
    return JsonResponse({"status": "ok", "service": "bare", "version": 1})


def db_view(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, title, body FROM bare_row WHERE id = %s", [1])
        row = cursor.fetchone()
    if row is None:
        raise Http404
    return JsonResponse({"id": row[0], "title": row[1], "body": row[2]})


urlpatterns = [path("json", json_view), path("db", db_view)]
application = get_wsgi_application()


def ensure_table() -> None:
    """Create ``bare_row`` with its one row (run once before serving)."""
    with connection.cursor() as cursor:
        cursor.execute(TABLE_SQL)
        cursor.execute("INSERT INTO bare_row VALUES (1, 'bare', repeat('x', 500)) ON CONFLICT (id) DO NOTHING")


if __name__ == "__main__" and sys.argv[1:] == ["ensure-table"]:
    ensure_table()
