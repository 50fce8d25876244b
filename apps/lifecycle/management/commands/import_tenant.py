"""manage.py import_tenant ARCHIVE --slug NEW [--shard S] [--name NAME]"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.lifecycle.importing import import_archive
from apps.tenancy.cli import validation_error_to_command_error


class Command(BaseCommand):
    help = ("Create a tenant from an export archive (export_tenant), on any shard, at the current schema "
            "version: an older archive is loaded at its recorded migration state, then migrated forward.")

    def add_arguments(self, parser):
        parser.add_argument("archive")
        parser.add_argument("--slug", required=True, help="the new tenant's slug")
        parser.add_argument("--shard", help="shard name (default: placement policy)")
        parser.add_argument("--name", help="the new tenant's name (default: the exported one)")

    def handle(self, *args, **options):
        path = Path(options["archive"])
        if not path.is_file():
            raise CommandError(f"No archive at {path}.")
        try:
            tenant = import_archive(path, slug=options["slug"], shard=options.get("shard"), name=options.get("name"),
                                    report=self.stdout.write)
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        self.stdout.write(self.style.SUCCESS(f"tenant {tenant.slug} created on shard {tenant.shard.name}"))
