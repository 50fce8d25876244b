"""Run any management command as one tenant, or as each tenant in turn."""

import argparse

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.tenancy.activation import tenant_activated
from apps.tenancy.models import Tenant
from apps.tenancy.moves import TenantFrozen, tenant_writable


class Command(BaseCommand):
    help = (
        "Run a management command with a tenant active on its shard, e.g. "
        "`tenant_command --tenant acme shell -c 'print(...)'` or `tenant_command --all <command>`. "
        "A tenant whose writes are frozen (a move switching it) is refused, or waited for with --wait."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--tenant", help="tenant slug")
        target.add_argument("--all", action="store_true", help="every tenant, one after another")
        parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                            help="wait this long for a frozen tenant to accept writes (default: refuse at once)")
        parser.add_argument("command_name")
        parser.add_argument("command_args", nargs=argparse.REMAINDER)

    def handle(self, *args, **options):
        if options["wait"] < 0:
            raise CommandError("--wait must be 0 or more seconds.")
        tenants = Tenant.objects.select_related("shard").exclude(schema_name="public").order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants:
                raise CommandError(f"No tenant with slug '{options['tenant']}'.")
        failures = []
        for tenant in tenants:
            if options["all"]:
                self.stdout.write(f"== {tenant.slug} ({tenant.shard.name})")
            try:
                # The command may write anything: never into a tenant a move is switching.
                tenant = tenant_writable(tenant, wait_seconds=options["wait"],
                                         report=lambda line: self.stdout.write(f"  {line}"))
            except TenantFrozen as exc:
                failures.append(f"{tenant.slug}: {exc}")
                self.stderr.write(str(exc))
                continue
            with tenant_activated(tenant):
                try:
                    call_command(options["command_name"], *options["command_args"], stdout=self.stdout)
                except CommandError as exc:
                    failures.append(f"{tenant.slug}: {exc}")
                    self.stderr.write(f"{tenant.slug}: {exc}")
        if failures:
            if len(failures) == 1 and options["tenant"]:
                raise CommandError(failures[0].split(": ", 1)[1])
            raise CommandError(f"{len(failures)} tenant(s) failed")
