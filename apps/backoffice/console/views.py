"""The operator console's pages, inside the operator admin (admin.site).

Thin: each view reads through console selectors or acts through console
services, and renders an admin-styled template. Every URL is wrapped in
``admin.site.admin_view`` (staff only, no caching, login redirect); the
actions also need a superuser, and every action form asks for a reason.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.jobs.models import DeadLetter
from apps.jobs.selectors import COUNT_CAP as JOB_COUNT_CAP
from apps.tenancy.models import Move, Shard, Tenant
from apps.tenancy.selectors import shard_list_with_counts

from ..models import OperatorAction
from . import forms, readings, selectors, services, traffic

TENANT_ACTIONS = {
    "suspend": ("Suspend", forms.ReasonForm),
    "resume": ("Resume", forms.ReasonForm),
    "move": ("Move to another shard", forms.MoveForm),
    "reindex": ("Rebuild the search index", forms.ReasonForm),
    "export": ("Export its data", forms.ExportForm),
    "support": ("Grant support access", forms.SupportForm),
    "export-whole": ("Export the whole tenant (archive)", forms.ReasonForm),
    "offboard": ("Delete (offboard)", forms.OffboardForm),
    "offboard-undo": ("Undo the deletion", forms.ReasonForm),
}


def _context(request, title: str, **extra) -> dict:
    return {**admin.site.each_context(request), "title": title, **extra}


def operator_only(view):
    """Actions change tenants and shards: superusers only (staff may read)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_superuser:
            raise PermissionDenied("Console actions are for platform operators (superusers).")
        return view(request, *args, **kwargs)

    return wrapped


def _tenant_or_404(slug: str) -> Tenant:
    tenant = selectors.tenant_for_console(slug)
    if tenant is None:
        raise Http404(f"No tenant '{slug}' in the console.")
    return tenant


def _shard_or_404(name: str) -> Shard:
    shard = selectors.shard_for_console(name)
    if shard is None:
        raise Http404(f"No shard '{name}'.")
    return shard


# --- overview ----------------------------------------------------------------------


def _overview_sections(read: dict[str, readings.Reading]) -> dict:
    shards_reading, queues, workers = read["shards"], read["queues"], read["workers"]
    up, size = shards_reading.by("saas_shard_up", "shard"), shards_reading.by("saas_shard_size_bytes", "shard")
    lag_b, lag_s = shards_reading.by("saas_replica_lag_bytes", "shard"), shards_reading.by("saas_replica_lag_seconds", "shard")
    replica_up = shards_reading.by("saas_replica_up", "shard")
    conns = shards_reading.by("saas_shard_connections", "shard")
    shard_rows = []
    for shard in shard_list_with_counts():
        name = shard.name
        health = None if not shards_reading.up else ("up" if up.get(name) else "down")
        shard_rows.append({
            "shard": shard, "health": health, "size": size.get(name), "tenants": shard.tenant_count,
            "replica": None if name not in replica_up else ("up" if replica_up[name] else "down"),
            "lag_bytes": lag_b.get(name), "lag_seconds": lag_s.get(name), "connections": conns.get(name),
        })
    depth = queues.by("saas_queue_messages", "queue")
    age = queues.by("saas_queue_oldest_message_age_seconds", "queue")
    per_queue_workers = workers.by("workers", "queue")
    queue_rows = [{"queue": q, "depth": depth.get(q), "age": age.get(q),
                   "workers": int(per_queue_workers.get(q, 0)) if workers.up else None}
                  for q in settings.TASK_QUEUES]
    dead_by_task: dict[str, float] = {}
    for labels, value in read["dead_letters"].series("saas_dead_letters"):
        dead_by_task[labels.get("task", "")] = dead_by_task.get(labels.get("task", ""), 0) + value
    outboxes = read["outboxes"]
    ages = {(lb.get("plane"), lb.get("shard")): v for lb, v in outboxes.series("saas_outbox_oldest_unsent_age_seconds")}
    outbox_rows = [{"plane": lb.get("plane"), "shard": lb.get("shard") or "-", "unsent": int(v),
                    "age": ages.get((lb.get("plane"), lb.get("shard")))}
                   for lb, v in outboxes.series("saas_outbox_unsent")]
    partition_rows = [{"shard": lb.get("shard"), "table": lb.get("table"), "months": int(v)}
                      for lb, v in read["partitions"].series("saas_partition_months_ahead")]
    return {"shard_rows": shard_rows, "queue_rows": queue_rows, "show_connections": bool(conns),
            "dead_rows": sorted(dead_by_task.items(), key=lambda kv: (-kv[1], kv[0])),
            "outbox_rows": outbox_rows, "partition_rows": partition_rows,
            "horizon": min((r["months"] for r in partition_rows), default=None),
            "workers_total": int(next(iter(workers.by("workers_total", "").values()), 0)) if workers.up else None,
            "worker_rows": workers.rows, "job_counts": {state: int(n) for state, n in read["jobs"].by(
                "jobs", "state").items()}, "job_rows": read["jobs"].rows, "job_cap": JOB_COUNT_CAP}


def _top_tenants() -> list[dict] | None:
    top = traffic.top_tenants(limit=10)
    if top is None:
        return None
    tenants = {t.pk: t for t in selectors.console_tenants().filter(pk__in=[tid for tid, _ in top])}
    rows = []
    for tenant_id, requests in top:
        tenant = tenants.get(tenant_id)
        if tenant is None:
            continue
        seen = traffic.tenant_traffic(tenant_id=tenant_id)
        rows.append({"tenant": tenant, "requests": requests, "server_errors": seen.server_errors,
                     "mean_ms": seen.mean_ms})
    return rows


@require_GET
def overview(request):
    read = readings.overview_readings()
    context = _context(request, "Operator console", readings=read, moves=list(selectors.open_moves()),
                       top_tenants=_top_tenants(), **_overview_sections(read))
    return render(request, "console/overview.html", context)


# --- tenants -------------------------------------------------------------------------


@require_GET
def tenant_list(request):
    query = (request.GET.get("q") or "").strip()[:100]
    rows = selectors.console_tenants().order_by("slug")
    if query:
        rows = rows.filter(slug__icontains=query) | rows.filter(name__icontains=query)
    return render(request, "console/tenant_list.html",
                  _context(request, "Tenants", tenants=rows[:200], query=query, more=rows.count() > 200))


def _usage(tenant: Tenant) -> dict | None:
    from apps.billing.selectors import usage_summary
    from apps.tenancy.activation import tenant_activated

    try:
        with tenant_activated(tenant):
            return usage_summary(tenant=tenant)
    except Exception as exc:  # the shard is down or slow: the page still answers
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


@require_GET
def tenant_detail(request, slug: str):
    from apps.accounts.support import support_grants_of_tenant

    tenant = _tenant_or_404(slug)
    context = _context(
        request, f"Tenant {tenant.slug}", tenant=tenant, usage=_usage(tenant),
        traffic=traffic.tenant_traffic(tenant_id=tenant.pk), actions=TENANT_ACTIONS,
        moves=list(Move.objects.filter(tenant=tenant).select_related("source", "target")[:10]),
        dead_letters=selectors.dead_letters_by_tenant(tenant),
        grants=list(support_grants_of_tenant(tenant_id=tenant.pk).order_by("-created_at")[:10]),
        recent_actions=list(selectors.operator_actions(tenant_id=tenant.pk)[:10]),
        hostname=tenant.domains.filter(is_primary=True).values_list("domain", flat=True).first(),
        lifecycle=_lifecycle_of(tenant),
    )
    return render(request, "console/tenant_detail.html", context)


def _perform_tenant_action(action: str, tenant: Tenant, form, actor) -> OperatorAction:
    data = form.cleaned_data
    if action == "suspend":
        return services.tenant_suspend(tenant=tenant, actor=actor, reason=data["reason"])
    if action == "resume":
        return services.tenant_resume(tenant=tenant, actor=actor, reason=data["reason"])
    if action == "move":
        return services.tenant_move(tenant=tenant, target=Shard.objects.get(name=data["target"]), actor=actor,
                                    reason=data["reason"])
    if action == "reindex":
        return services.tenant_reindex(tenant=tenant, actor=actor, reason=data["reason"])
    if action == "export":
        return services.tenant_export(tenant=tenant, actor=actor, reason=data["reason"], kind=data["kind"],
                                      format=data["format"])
    if action in ("export-whole", "offboard", "offboard-undo"):
        return _perform_lifecycle_action(action, tenant, data, actor)
    return services.tenant_grant_support(tenant=tenant, actor=actor, operator=data["operator"],
                                         reason=data["reason"], hours=data["hours"])


@operator_only
def tenant_action(request, slug: str, action: str):
    tenant = _tenant_or_404(slug)
    if action not in TENANT_ACTIONS:
        raise Http404(f"No action '{action}'.")
    label, form_class = TENANT_ACTIONS[action]
    kwargs = {"shards": selectors.target_shards(excluding=tenant.shard)} if action == "move" else {}
    form = form_class(request.POST or None, **kwargs)
    if request.method == "POST" and form.is_valid():
        try:
            done = _perform_tenant_action(action, tenant, form, request.user)
        except services.ConsoleError as exc:
            form.add_error(None, str(exc))
        else:
            verb = "started" if done.move_ids else "done"
            messages.success(request, f"{label}: {verb} for {tenant.slug} (recorded as operator action {done.pk}).")
            if done.move_ids:
                return HttpResponseRedirect(reverse("console:action", args=[done.pk]))
            return HttpResponseRedirect(reverse("console:tenant", args=[tenant.slug]))
    return render(request, "console/action_form.html",
                  _context(request, f"{label}: {tenant.slug}", form=form, tenant=tenant, label=label,
                           cancel_url=reverse("console:tenant", args=[tenant.slug])))


# --- moves ---------------------------------------------------------------------------


@require_GET
def move_detail(request, pk: int):
    move = Move.objects.select_related("tenant", "source", "target").filter(pk=pk).first()
    if move is None:
        raise Http404("No such move.")
    return render(request, "console/move_detail.html",
                  _context(request, f"Move of {move.tenant.slug}", move=move, progress=selectors.progress_of(move)))


@require_GET
def move_progress(request, pk: int):
    """What the progress bars poll: the move's phase, figures and whether it finished."""
    move = Move.objects.select_related("tenant", "source", "target").filter(pk=pk).first()
    if move is None:
        return JsonResponse({"error": "no such move"}, status=404)
    response = JsonResponse(selectors.progress_of(move))
    response["Cache-Control"] = "no-store"
    return response


# --- shards --------------------------------------------------------------------------


@require_GET
def shard_detail(request, name: str):
    shard = _shard_or_404(name)
    rows, sizes_available = selectors.shard_tenants_by_size(shard)
    return render(request, "console/shard_detail.html", _context(
        request, f"Shard {shard.name}", shard=shard, rows=rows, sizes_available=sizes_available,
        plan=selectors.drain_plan(shard), rebalance=selectors.rebalance_plan(),
        moves=list(Move.objects.filter(finished_at__isnull=True).filter(source=shard) | Move.objects.filter(
            finished_at__isnull=True, target=shard)),
        recent_actions=list(selectors.operator_actions().filter(shard_name=shard.name)[:10])))


def _plan_page(request, *, run, title: str, label: str, cancel_url: str, plan, explanation: str):
    """A plan of moves, a reason and a button; ``run(reason)`` starts the moves."""
    form = forms.ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            done = run(form.cleaned_data["reason"])
        except services.ConsoleError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{title}: {len(done.move_ids)} move(s) started.")
            return HttpResponseRedirect(reverse("console:action", args=[done.pk]))
    return render(request, "console/plan_form.html", _context(
        request, title, form=form, label=label, cancel_url=cancel_url, plan=plan, explanation=explanation))


@operator_only
def shard_drain(request, name: str):
    shard = _shard_or_404(name)
    return _plan_page(
        request, run=lambda reason: services.shard_drain(shard=shard, actor=request.user, reason=reason),
        title=f"Drain shard {shard.name}", label="Drain", cancel_url=reverse("console:shard", args=[name]),
        plan=[(tenant, tenant.shard, target) for tenant, target in selectors.drain_plan(shard)],
        explanation=f"Shard {shard.name} will take no new tenants, and each of its tenants moves to the shard below.")


@operator_only
def shards_rebalance(request):
    return _plan_page(
        request, run=lambda reason: services.shards_rebalance(actor=request.user, reason=reason),
        title="Rebalance shards", label="Rebalance", cancel_url=reverse("console:overview"),
        plan=selectors.rebalance_plan(),
        explanation="Tenant counts proportional to shard weight; draining shards are emptied.")


# --- dead letters ----------------------------------------------------------------------


@require_GET
def dead_letter_list(request):
    flt = selectors.DeadLetterFilter.from_data(request.GET)
    rows = selectors.dead_letters(flt)
    return render(request, "console/dead_letters.html", _context(
        request, "Dead letters", rows=rows[:200], total=rows.count(), flt=flt, query=flt.as_query(),
        task_names=selectors.dead_letter_task_names(), statuses=[*DeadLetter.Status.values, "all"]))


def _requested_ids(data) -> list[int]:
    ids = []
    for value in data.getlist("ids"):
        for part in value.split(","):
            if part.strip().isdigit():
                ids.append(int(part))
    return ids


@operator_only
def dead_letter_confirm(request):
    """The confirmation page of a replay or discard: the dead letters chosen
    (by id, or everything waiting that matches the filter), and a reason."""
    source = request.POST if request.method == "POST" else request.GET
    operation = source.get("operation") or "replay"
    if operation not in ("replay", "discard"):
        operation = "replay"
    flt = selectors.DeadLetterFilter.from_data({**source.dict(), "status": DeadLetter.Status.DEAD})
    ids = _requested_ids(source)
    chosen = selectors.dead_letters(flt)
    if ids:
        chosen = DeadLetter.objects.filter(pk__in=ids, status=DeadLetter.Status.DEAD)
    elif not flt.any and request.method == "GET":
        messages.error(request, "Choose dead letters, or filter by task, tenant or error, before a bulk action.")
        return HttpResponseRedirect(reverse("console:dead_letters"))
    chosen = list(chosen.order_by("pk")[: services.MAX_BULK])
    form = forms.DeadLetterActionForm(request.POST or None, initial={
        "operation": operation, "ids": ",".join(str(r.pk) for r in chosen)})
    if request.method == "POST" and form.is_valid():
        perform = services.dead_letters_replay if form.cleaned_data["operation"] == "replay" else services.dead_letters_discard
        try:
            done = perform(ids=form.cleaned_data["ids"], actor=request.user, reason=form.cleaned_data["reason"],
                           filters=flt.as_query())
        except services.ConsoleError as exc:
            form.add_error(None, str(exc))
        else:
            count = len(done.detail.get("dead_letters", []))
            verb = "replayed" if done.kind == OperatorAction.Kind.DEAD_LETTER_REPLAY else "discarded"
            messages.success(request, f"{count} dead letter(s) {verb}.")
            if done.detail.get("error"):
                messages.error(request, f"Stopped: {done.detail['error']}")
            return HttpResponseRedirect(reverse("console:dead_letters"))
    if not chosen and request.method == "GET":
        messages.info(request, "No waiting dead letter matches.")
        return HttpResponseRedirect(reverse("console:dead_letters"))
    return render(request, "console/dead_letter_confirm.html", _context(
        request, f"{operation.title()} {len(chosen)} dead letter(s)?", form=form, rows=chosen,
        operation=operation, flt=flt))


# --- operator actions --------------------------------------------------------------------


@require_GET
def action_list(request):
    kind = request.GET.get("kind", "")
    actor = (request.GET.get("actor") or "").strip()[:100]
    slug = (request.GET.get("tenant") or "").strip()[:40]
    tenant = selectors.tenant_for_console(slug) if slug else None
    rows = selectors.operator_actions(kind=kind if kind in OperatorAction.Kind.values else "", actor=actor,
                                      tenant_id=tenant.pk if tenant else (-1 if slug else None))
    return render(request, "console/actions.html", _context(
        request, "Operator actions", rows=rows[:200], kinds=OperatorAction.Kind.choices, kind=kind, actor=actor,
        tenant_slug=slug))


@require_GET
def action_detail(request, pk: int):
    action = OperatorAction.objects.filter(pk=pk).first()
    if action is None:
        raise Http404("No such operator action.")
    tenant = Tenant.objects.filter(pk=action.tenant_id).first() if action.tenant_id else None
    return render(request, "console/action_detail.html", _context(
        request, f"Operator action {action.pk}", action=action, tenant=tenant,
        moves=[(m, selectors.progress_of(m)) for m in selectors.action_moves(action)]))


# --- a whole tenant: export, offboarding (apps/lifecycle) --------------------------


def _perform_lifecycle_action(action: str, tenant: Tenant, data: dict, actor) -> OperatorAction:
    if action == "export-whole":
        return services.tenant_export_whole(tenant=tenant, actor=actor, reason=data["reason"])
    if action == "offboard":
        return services.tenant_offboard(tenant=tenant, actor=actor, reason=data["reason"], now=data["now"])
    return services.tenant_offboard_undo(tenant=tenant, actor=actor, reason=data["reason"])


def _lifecycle_of(tenant: Tenant) -> dict:
    """The tenant's whole-tenant exports (with progress) and its deletion, if any."""
    from apps.lifecycle import selectors as lifecycle

    exports = list(lifecycle.export_list(tenant_id=tenant.pk)[:5])
    return {"exports": [{"export": e, "percent": lifecycle.export_percent(e), "stalled": lifecycle.export_stalled(e)}
                        for e in exports],
            "offboarding": lifecycle.offboarding_of(tenant.pk)}
