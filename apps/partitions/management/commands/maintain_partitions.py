from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.partitions.maintenance import maintain_all
from apps.tenancy import planes


class Command(BaseCommand):
    help = (
        "Create monthly partitions ahead (moving in rows that waited in the DEFAULT partition) and retire "
        "those past retention, in every tenant schema."
    )

    def add_arguments(self, parser):
        parser.add_argument("--months-ahead", type=int, default=settings.PARTITION_MONTHS_AHEAD)
        parser.add_argument("--retention-months", type=int, default=settings.PARTITION_RETENTION_MONTHS,
                            help="drop partitions wholly older than this many months (0: keep all)")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, **options):
        if options["months_ahead"] < 0 or options["retention_months"] < 0:
            raise CommandError("--months-ahead and --retention-months must be zero or more.")
        result = maintain_all(
            planes.shard_aliases(),
            months_ahead=options["months_ahead"],
            retention_months=options["retention_months"] or None,
            dry_run=options["dry_run"],
            report=self.stdout.write,
        )
        summary = (
            f"{result.schemas} schema(s): {result.created} partition(s) "
            f"{'to create' if options['dry_run'] else 'created'}, {result.dropped} "
            f"{'to drop' if options['dry_run'] else 'dropped'}, {result.moved_rows} row(s) "
            f"{'to move' if options['dry_run'] else 'moved'} out of default partitions, "
            f"{result.default_rows} left there, {len(result.failed)} failed"
        )
        if result.failed:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
