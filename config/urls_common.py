"""Error handlers shared by the public and tenant URL confs."""

handler400 = "apps.api.views.bad_request"
handler403 = "apps.api.views.permission_denied"
handler404 = "apps.api.views.not_found"
handler500 = "apps.api.views.server_error"
