"""Helpers shared by the tenancy management commands."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError


def validation_error_to_command_error(exc: ValidationError) -> CommandError:
    """A ValidationError as one readable line per field, for a non-zero exit."""
    if hasattr(exc, "message_dict"):
        lines = [f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()]
    else:
        lines = exc.messages
    return CommandError("; ".join(lines))
