"""The tenant admin's own pages: members and invitations, API keys, the
audit log, exports and usage. Thin views over the same services and selectors
the tenant API calls, so the rules (owner rules, quotas, audit rows) are the
API's; ``apps.backoffice.sites`` mounts them behind the site's membership check.
"""
