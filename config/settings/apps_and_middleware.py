"""Installed apps (control plane and tenant schemas), middleware, templates, URLconfs."""

# --- applications ---------------------------------------------------------
# Control-plane apps: tables in the public schema of the control database.
SHARED_APPS = [
    # Before django_tenants so that our `create_tenant` (the provisioning
    # service) shadows the library's bare one.
    "apps.tenancy",
    "apps.fleet",  # before django_tenants too: its `migrate` shadows the library's
    "django_tenants",
    "apps.accounts",
    "apps.observability",
    "apps.ops",
    "apps.http",
    "apps.api",
    "apps.backoffice",
    "apps.partitions",
    "apps.billing",
    "apps.jobs",
    "apps.notifications",
    "apps.ratelimit",
    "apps.caching",
    "apps.flags",
    "apps.lifecycle",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "django.contrib.postgres",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
]
# Tenant apps: tables in every tenant's own schema.
TENANT_APPS = [
    "apps.content",
    "apps.search",
    "apps.analytics",
    "apps.audit",
    "apps.reports",
    "apps.idempotency",
    "apps.outbox",
    "apps.webhooks",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenancy.Tenant"
TENANT_DOMAIN_MODEL = "tenancy.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
# One `SET search_path` per tenant switch on a connection, not one per cursor.
TENANT_LIMIT_SET_CALLS = True

AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    # First, so that every response (probes included) is counted and timed.
    "apps.observability.http_metrics.PrometheusBeforeMiddleware",
    # Probes and scrapes are answered before host validation and tenant
    # resolution: a kubelet calls them by pod IP, and they must not need a DB.
    "apps.ops.endpoints.OperationalEndpointsMiddleware",
    "apps.observability.middleware.RequestIdMiddleware",
    # Per-tenant request and error counts for the operator console (in process;
    # a thread flushes them to Redis, so a request never waits on it).
    "apps.backoffice.console.traffic.TenantTrafficMiddleware",
    "apps.ratelimit.shedding.LoadSheddingMiddleware",
    "apps.tenancy.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.observability.middleware.UserContextMiddleware",
    "apps.accounts.middleware.SupportAccessMiddleware",
    # The message storage is made only when a page uses it.
    "apps.observability.lazy_messages.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.http.security.ContentSecurityPolicyMiddleware",
    "apps.observability.http_metrics.PrometheusAfterMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
