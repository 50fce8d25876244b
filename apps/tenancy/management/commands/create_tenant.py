from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from apps.tenancy.cli import validation_error_to_command_error
from apps.tenancy.services import public_tenant_ensure, shard_register_configured, tenant_create


class Command(BaseCommand):
    help = "Provision a tenant: schema, domain and an owner account. Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="lowercase letters, digits and hyphens; becomes <slug>.<PLATFORM_DOMAIN>")
        parser.add_argument("--name", required=True)
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--domain", help="host name (default: <slug>.<PLATFORM_DOMAIN>)")
        parser.add_argument("--plan", help="plan code (default: the lowest-ranked plan)")
        parser.add_argument("--admin-password", help="password for a new owner account (default: generated)")
        parser.add_argument("--shard", help="shard name (default: the least loaded active shard)")

    def handle(self, *args, **options):
        public_tenant_ensure()
        shard_register_configured()
        try:
            result = tenant_create(
                slug=options["slug"],
                name=options["name"],
                admin_email=options["admin_email"],
                domain=options["domain"],
                plan=options["plan"],
                admin_password=options["admin_password"],
                shard=options["shard"],
            )
        except ValidationError as exc:
            raise validation_error_to_command_error(exc) from exc
        tenant = result.tenant
        verb = "Created" if result.created else "Already present:"
        self.stdout.write(self.style.SUCCESS(f"{verb} tenant {tenant.slug} (schema {tenant.schema_name})"))
        self.stdout.write(f"  host:  {result.domain}")
        self.stdout.write(f"  shard: {tenant.shard.name}")
        self.stdout.write(f"  plan:  {tenant.plan.code}")
        if result.created:
            self.stdout.write(f"  provisioned in {result.seconds:.2f}s")
        self.stdout.write(f"  owner: {result.admin_email}")
        if result.admin_password:
            self.stdout.write(f"  owner password (shown once): {result.admin_password}")
