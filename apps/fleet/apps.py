from django.apps import AppConfig


class FleetConfig(AppConfig):
    """Operations on the shard fleet: tenant moves, the fleet-wide migration
    runner, orphan clean-up. Listed before django_tenants in INSTALLED_APPS
    so that its `migrate` shadows the library's."""

    name = "apps.fleet"
    label = "fleet"
    verbose_name = "Fleet"
