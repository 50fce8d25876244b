"""Keep the hostname -> tenant cache honest.

These receivers are cache bookkeeping, not business logic: every path that
changes a tenant or a domain (services, the operator admin, a shell) must drop
the cached lookups, and model signals are the one place all of them pass.
The hostnames' versions are raised after the control plane commits (and
once now), so a concurrent request cannot re-cache the old row between the
write and the commit; a raise that cannot reach Redis is recorded and swept
(``apps.caching.versioned.invalidate``).
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from apps.caching import versioned

from .models import Domain, Shard, Tenant
from .selectors import hostname_version_key


def _forget_hostnames(hostnames: set[str], using: str) -> None:
    """After the commit of ``using``, the database the change was written to."""
    versioned.invalidate([hostname_version_key(h) for h in hostnames if h], using=using)


@receiver(pre_save, sender=Domain)
def _remember_previous_hostname(sender, instance: Domain, **kwargs) -> None:
    instance._previous_hostname = None
    if instance.pk:
        instance._previous_hostname = (
            Domain.objects.filter(pk=instance.pk).values_list("domain", flat=True).first()
        )


@receiver(post_save, sender=Domain)
@receiver(post_delete, sender=Domain)
def _domain_changed(sender, instance: Domain, using: str, **kwargs) -> None:
    _forget_hostnames({instance.domain, getattr(instance, "_previous_hostname", None)}, using)


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _tenant_changed(sender, instance: Tenant, using: str, **kwargs) -> None:
    hostnames = set(Domain.objects.filter(tenant_id=instance.pk).values_list("domain", flat=True))
    _forget_hostnames(hostnames, using)


@receiver(post_save, sender=Shard)
def _shard_changed(sender, instance: Shard, using: str, **kwargs) -> None:
    # Cached tenants carry their shard (state, alias); refresh all of them.
    hostnames = set(Domain.objects.filter(tenant__shard_id=instance.pk).values_list("domain", flat=True))
    _forget_hostnames(hostnames, using)
