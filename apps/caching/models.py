"""Control-plane records of the cache."""

from __future__ import annotations

from django.db import models


class PendingInvalidation(models.Model):
    """A cache version raise that could not reach Redis when its write
    committed; the sweep applies it once Redis answers (at least once)."""

    version_key = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.version_key
