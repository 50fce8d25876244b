from django.core.management.base import BaseCommand

from apps.backoffice import services


class Command(BaseCommand):
    help = "Create the operator account and the demo tenant with sample data. Safe to re-run."

    def handle(self, *args, **options):
        seed = services.demo_seed()
        tenant = seed.provisioned.tenant
        self.stdout.write(self.style.SUCCESS(f"Demo tenant {tenant.slug} ready at {seed.provisioned.domain}"))
        self.stdout.write(f"  documents added: {seed.documents_created}")
        self.stdout.write(f"  tenant owner:    {services.DEMO_OWNER_EMAIL} / {services.DEMO_OWNER_PASSWORD}")
        self.stdout.write(f"  operator:        {services.OPERATOR_EMAIL} / {services.OPERATOR_PASSWORD}")
