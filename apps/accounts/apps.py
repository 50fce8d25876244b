from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from apps.tenancy.services import owner_hooks_register

        from .tenant_owner import AccountOwnerHooks

        owner_hooks_register(AccountOwnerHooks())

        from apps.billing.selectors import usage_meter_register

        from .selectors import api_keys_of_tenant, memberships_of_tenant

        usage_meter_register("seats", lambda tenant: memberships_of_tenant(tenant_id=tenant.pk).count())
        usage_meter_register(
            "api_keys", lambda tenant: api_keys_of_tenant(tenant_id=tenant.pk).filter(revoked_at__isnull=True).count())

        # The invitation and reset emails carry ids only; their links (and
        # tokens) are derived by these in the worker that sends them.
        from apps.notifications.emails import register_resolver

        from .passwords import password_reset_email_links
        from .services import invitation_email_links

        register_resolver("invitation", invitation_email_links)
        register_resolver("password_reset", password_reset_email_links)
