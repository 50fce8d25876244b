"""Settings shared by every environment.

Everything that differs between machines comes from environment variables, so
one image runs everywhere (twelve-factor). Per-environment modules
(``local``, ``test``, ``production``) only change defaults.

The settings live in one module per topic, all gathered here:

    apps_and_middleware  SHARED_APPS and TENANT_APPS (INSTALLED_APPS), middleware,
                         templates, URLconfs, the tenant and user models
    core                 paths, language, time zone, static files
    security             secret key, hosts, sessions, Content-Security-Policy,
                         account tokens and links
    databases            the control database, shards, replicas, read routing,
                         partitioned tables
    tenancy              the host -> tenant cache, moving tenants between shards
    caching              Redis, the cache, its health probes, pushed invalidations
    tasks                Celery (broker, queues, routes, beat), the outbox relay,
                         once-only effects, exports
    jobs                 job records, worker presence, unique jobs, batches
    notifications        email and the circuit breaker around it
    api                  REST framework, the OpenAPI schema, request bounds
    ratelimit            rate limits and load shedding
    observability        metrics, logs, traces, the operator console's readings
    webhooks             tenant webhooks: delivery bounds, retries, limits per plan
    lifecycle            whole-tenant exports and imports, offboarding, erasure

Each module imports from the others what it builds on (``tasks`` takes
REDIS_URL from ``caching``, say), so the order of the imports below carries
no meaning, and a name is defined in exactly one module.
"""

from __future__ import annotations

from .api import *  # noqa: F403
from .apps_and_middleware import *  # noqa: F403
from .caching import *  # noqa: F403
from .core import *  # noqa: F403
from .databases import *  # noqa: F403

# Every environment variable is read through these typed readers: a bad value
# stops the process with one line naming the variable and the expected form.
# The per-environment modules import them from here.
from .environment import (  # noqa: F401
    BROKER_SCHEMES,
    POSTGRES_SCHEMES,
    REDIS_SCHEMES,
    env,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_named_urls,
    env_url,
)
from .jobs import *  # noqa: F403
from .lifecycle import *  # noqa: F403
from .notifications import *  # noqa: F403
from .observability import *  # noqa: F403
from .ratelimit import *  # noqa: F403
from .security import *  # noqa: F403
from .tasks import *  # noqa: F403
from .tenancy import *  # noqa: F403
from .webhooks import *  # noqa: F403
