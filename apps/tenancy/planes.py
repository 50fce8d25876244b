"""Where each model lives: the control plane or a tenant's schema on a shard.

Declared once, in settings: an app listed in TENANT_APPS is tenant data, every
other app is control plane. The router, the migration runner, provisioning
and the architecture tests all read it through this module.
"""

from __future__ import annotations

from functools import cache

from django.apps import apps
from django.conf import settings

CONTROL = "control"
TENANT = "tenant"


@cache
def tenant_app_labels() -> frozenset[str]:
    labels = set()
    for config in apps.get_app_configs():
        full_name = f"{config.__module__}.{config.__class__.__name__}"
        if config.name in settings.TENANT_APPS or full_name in settings.TENANT_APPS:
            labels.add(config.label)
    return frozenset(labels)


def plane_of_app(app_label: str) -> str:
    return TENANT if app_label in tenant_app_labels() else CONTROL


def plane_of(model) -> str:
    return plane_of_app(model._meta.app_label)


def shard_aliases() -> list[str]:
    """Primary aliases of every configured shard."""
    prefix, suffix = settings.SHARD_ALIAS_PREFIX, settings.REPLICA_ALIAS_SUFFIX
    return [a for a in settings.DATABASES if a.startswith(prefix) and not a.endswith(suffix)]


def is_shard_alias(alias: str) -> bool:
    return alias in shard_aliases()


def replica_alias(shard_alias: str) -> str | None:
    candidate = shard_alias + settings.REPLICA_ALIAS_SUFFIX
    return candidate if candidate in settings.DATABASES else None


def shard_alias_for_name(name: str) -> str:
    return settings.SHARD_ALIAS_PREFIX + name
