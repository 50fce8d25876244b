"""Drop the cached flag definitions whenever a flag changes (admin, shell, ...)."""

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from .models import Flag
from .selectors import CACHE_KEY


@receiver(post_save, sender=Flag)
@receiver(post_delete, sender=Flag)
@receiver(m2m_changed, sender=Flag.tenants.through)
def _flags_changed(**kwargs) -> None:
    cache.delete(CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(CACHE_KEY))
