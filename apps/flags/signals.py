"""Drop the cached flag definitions whenever a flag changes (admin, shell, ...)."""

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from apps.caching import versioned

from .models import Flag
from .selectors import definitions_version_key


@receiver(post_save, sender=Flag)
@receiver(post_delete, sender=Flag)
@receiver(m2m_changed, sender=Flag.tenants.through)
def _flags_changed(using: str, **kwargs) -> None:
    versioned.invalidate([definitions_version_key()], using=using)
