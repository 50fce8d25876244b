import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.tenancy.orphans import orphan_list, orphans_drop


class Command(BaseCommand):
    help = (
        "List tenant schemas that a shard holds but the registry does not place there (e.g. the old copy of an "
        "interrupted move); with --drop --yes, drop those orphaned for longer than the grace period."
    )

    def add_arguments(self, parser):
        parser.add_argument("--shard", action="append", help="only this shard (repeatable)")
        parser.add_argument("--drop", action="store_true", help="drop orphans older than the grace period")
        parser.add_argument("--yes", action="store_true", help="confirm --drop")
        parser.add_argument("--grace-hours", type=float, default=settings.ORPHAN_GRACE_HOURS,
                            help=f"minimum time since first seen (default {settings.ORPHAN_GRACE_HOURS:g})")

    def handle(self, *args, **options):
        if options["grace_hours"] < 0:
            raise CommandError("--grace-hours must be 0 or more.")
        grace = dt.timedelta(hours=options["grace_hours"])
        found = orphan_list(shard_names=options["shard"])
        now = timezone.now()
        for orphan in found:
            age = now - orphan.since
            due = "due" if age >= grace else f"due in {(grace - age).total_seconds() / 3600:.1f}h"
            self.stdout.write(f"{orphan.shard:<12} {orphan.schema:<40} orphan for {age.total_seconds() / 3600:.1f}h "
                              f"({due}): {orphan.reason}")
        self.stdout.write(f"{len(found)} orphan schema(s)")
        if not options["drop"]:
            return
        if not options["yes"]:
            raise CommandError("Dropping deletes data for good: add --yes to confirm.")
        dropped = orphans_drop(grace=grace, report=lambda line: self.stdout.write(f"  {line}"))
        self.stdout.write(self.style.SUCCESS(f"dropped {len(dropped)} orphan schema(s)"))
