import datetime as dt

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.fleet.orphans import orphan_list, orphans_drop, replication_orphans, replication_orphans_drop


class Command(BaseCommand):
    help = (
        "List tenant schemas that a shard holds but the registry does not place there (e.g. the old copy of an "
        "interrupted move), and replication slots, publications and subscriptions of moves that are over; with "
        "--drop --yes, drop those schemas orphaned for longer than the grace period and every replication orphan "
        "(a slot nobody reads makes its server keep WAL)."
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
        replication = replication_orphans(shard_names=options["shard"])
        for orphan in replication:
            state = "active" if orphan.leftover.active else "inactive"
            self.stdout.write(f"{orphan.shard:<12} {orphan.leftover.kind} {orphan.leftover.name} ({state}): "
                              f"{orphan.reason}")
        self.stdout.write(f"{len(replication)} replication orphan(s)")
        if not options["drop"]:
            return
        if not options["yes"]:
            raise CommandError("Dropping deletes data for good: add --yes to confirm.")
        gone = replication_orphans_drop(report=lambda line: self.stdout.write(f"  {line}"))
        self.stdout.write(f"dropped {len(gone)} replication orphan(s)")
        dropped = orphans_drop(grace=grace, report=lambda line: self.stdout.write(f"  {line}"))
        self.stdout.write(self.style.SUCCESS(f"dropped {len(dropped)} orphan schema(s)"))
