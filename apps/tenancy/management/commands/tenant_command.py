"""Run any management command as one tenant, or as each tenant in turn."""

import argparse

from django.core.management import call_command

from apps.tenancy.activation import tenant_activated
from apps.tenancy.commands import TenantCommand


class Command(TenantCommand):
    help = (
        "Run a management command with a tenant active on its shard, e.g. "
        "`tenant_command --tenant acme shell -c 'print(...)'` or `tenant_command --all <command>`. "
        "A tenant whose writes are frozen (a move switching it) is refused, or waited for with --wait."
    )
    targets = "choice"
    # The command may write anything: never into a tenant a move is switching.
    writes = True

    def add_command_arguments(self, parser):
        parser.add_argument("command_name")
        parser.add_argument("command_args", nargs=argparse.REMAINDER)

    def handle_tenant(self, tenant, options):
        if options["all"]:
            self.stdout.write(f"== {tenant.slug} ({tenant.shard.name})")
        with tenant_activated(tenant):
            call_command(options["command_name"], *options["command_args"], stdout=self.stdout)
