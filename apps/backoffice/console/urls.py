"""The operator console's URLs, mounted under the operator admin (/admin/console/).

Each view goes through ``admin.site.admin_view``: staff only (others are
sent to the admin login), CSRF-protected, never cached.
"""

from django.contrib import admin
from django.urls import path

from . import jobs, views, webhooks

app_name = "console"


def _admin(view):
    return admin.site.admin_view(view)


urlpatterns = [
    path("", _admin(views.overview), name="overview"),
    path("tenants/", _admin(views.tenant_list), name="tenants"),
    path("tenants/<slug:slug>/", _admin(views.tenant_detail), name="tenant"),
    path("tenants/<slug:slug>/webhooks/", _admin(webhooks.tenant_webhooks), name="tenant-webhooks"),
    path("tenants/<slug:slug>/<slug:action>/", _admin(views.tenant_action), name="tenant-action"),
    path("moves/<int:pk>/", _admin(views.move_detail), name="move"),
    path("moves/<int:pk>/progress.json", _admin(views.move_progress), name="move-progress"),
    path("shards/rebalance/", _admin(views.shards_rebalance), name="rebalance"),
    path("shards/<slug:name>/", _admin(views.shard_detail), name="shard"),
    path("shards/<slug:name>/drain/", _admin(views.shard_drain), name="shard-drain"),
    path("dead-letters/", _admin(views.dead_letter_list), name="dead_letters"),
    path("dead-letters/confirm/", _admin(views.dead_letter_confirm), name="dead_letter_confirm"),
    path("jobs/", _admin(jobs.job_list), name="jobs"),
    path("jobs/<str:task_id>/", _admin(jobs.job_detail), name="job"),
    path("jobs/<str:task_id>/<slug:operation>/", _admin(jobs.job_action), name="job-action"),
    path("batches/reindex-all/", _admin(jobs.reindex_all), name="reindex-all"),
    path("batches/<uuid:batch_id>/", _admin(jobs.batch_detail), name="batch"),
    path("batches/<uuid:batch_id>/progress.json", _admin(jobs.batch_progress_json), name="batch-progress"),
    path("actions/", _admin(views.action_list), name="actions"),
    path("actions/<int:pk>/", _admin(views.action_detail), name="action"),
]
