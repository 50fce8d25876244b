"""The Kubernetes manifests deploy every process, validly and safely.

Offline: core resources are checked against the Kubernetes OpenAPI schemas
bundled in `kubernetes-validate`, KEDA resources against
platform/kubernetes/crd-schemas/. Then the properties an operator relies on:
every queue has a worker, every worker group scales on its own queues, one
beat, probes, limits, non-root, read-only root, pinned images, budgets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support import ROOT

K8S = ROOT / "platform" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


DOCS = documents()


def of_kind(kind: str, source: str | None = None) -> list[dict]:
    return [d for name, d in DOCS if d["kind"] == kind and (source is None or name == source)]


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec["containers"]


@pytest.mark.parametrize(("source", "doc"), DOCS, ids=[f"{n}:{d['kind']}/{d['metadata']['name']}" for n, d in DOCS])
def test_every_manifest_is_valid(source, doc):
    if doc["apiVersion"].startswith("keda.sh/"):
        schema_file = K8S / "crd-schemas" / f"keda.sh_v1alpha1_{doc['kind'].lower()}.json"
        assert schema_file.exists(), f"no schema for {doc['kind']}"
        jsonschema.validate(doc, json.loads(schema_file.read_text()))
    else:
        import kubernetes_validate

        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_queue_is_consumed_by_exactly_one_worker_group_and_scaled_on_it():
    from django.conf import settings

    consumed: dict[str, str] = {}
    for deployment in of_kind("Deployment", "workers.yaml"):
        command = containers(deployment)[0]["command"]
        queues = command[command.index("--queues") + 1].split(",")
        for queue in queues:
            assert queue not in consumed, f"{queue} consumed by {consumed[queue]} and {deployment['metadata']['name']}"
            consumed[queue] = deployment["metadata"]["name"]
    assert set(consumed) == set(settings.TASK_QUEUES)
    for source in ("keda.yaml", "keda-rabbitmq.yaml"):
        scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind("ScaledObject", source)}
        assert set(scaled) == set(consumed.values()), source
        for queue, deployment in consumed.items():
            names = {t["metadata"].get("listName") or t["metadata"].get("queueName")
                     for t in scaled[deployment]["spec"]["triggers"]}
            assert queue in names, f"{deployment} does not scale on {queue} ({source})"


def test_the_procfile_runs_the_same_worker_groups():
    procfile = (ROOT / "Procfile").read_text()
    local = {tuple(sorted(m.group(1).split(","))) for m in re.finditer(r"--queues (\S+)", procfile)}
    deployed = set()
    for deployment in of_kind("Deployment", "workers.yaml"):
        command = containers(deployment)[0]["command"]
        deployed.add(tuple(sorted(command[command.index("--queues") + 1].split(","))))
    assert local == deployed


def test_exactly_one_beat():
    beats = [d for d in of_kind("Deployment") if "beat" in containers(d)[0]["command"]]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1 and beats[0]["spec"]["strategy"]["type"] == "Recreate"
    autoscaled = {s["spec"]["scaleTargetRef"]["name"] for s in of_kind("ScaledObject") + of_kind("HorizontalPodAutoscaler")}
    assert beats[0]["metadata"]["name"] not in autoscaled


@pytest.mark.parametrize("doc", of_kind("Deployment") + of_kind("Job"), ids=lambda d: d["metadata"]["name"])
def test_workloads_are_pinned_limited_unprivileged_and_read_only(doc):
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod.get("automountServiceAccountToken") is False
    mounts_needed = {"/tmp"}
    for container in pod["containers"]:
        image = container["image"]
        assert ":" in image and not image.endswith(":latest"), f"{image}: pin an immutable tag"
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert mounts_needed <= mounted, f"{doc['metadata']['name']}: a read-only root needs a writable /tmp"


@pytest.mark.parametrize("doc", [d for d in of_kind("Deployment") if "beat" not in containers(d)[0]["command"]],
                         ids=lambda d: d["metadata"]["name"])
def test_web_and_workers_have_probes_and_a_disruption_budget(doc):
    container = containers(doc)[0]
    assert {"startupProbe", "livenessProbe"} <= set(container), doc["metadata"]["name"]
    if doc["metadata"]["name"] == "saas-web":
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["lifecycle"]["preStop"], "drain before SIGTERM"
    budgets = {b["spec"]["selector"]["matchLabels"]["app"] for b in of_kind("PodDisruptionBudget")}
    assert doc["spec"]["selector"]["matchLabels"]["app"] in budgets


def test_the_web_tier_is_autoscaled_and_scraped_on_the_internal_listener():
    hpa = of_kind("HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "saas-web"
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}
    web = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "saas-web")
    annotations = web["spec"]["template"]["metadata"]["annotations"]
    config = of_kind("ConfigMap")[0]["data"]
    assert annotations["prometheus.io/port"] == config["OPS_PORT"]


def test_a_migration_job_and_config_templates_exist():
    assert of_kind("Job", "migrate-job.yaml")
    command = containers(of_kind("Job", "migrate-job.yaml")[0])[0]["command"]
    assert command[:3] == ["python", "manage.py", "migrate"]
    secret = of_kind("Secret")[0]
    provided = set(of_kind("ConfigMap")[0]["data"]) | set(secret["stringData"])
    required = set(production_required_variables())
    assert required and required <= provided, required - provided


def production_required_variables() -> list[str]:
    """REQUIRED_VARIABLES of the production settings, read without importing
    them (importing refuses to start without those very variables)."""
    import ast

    tree = ast.parse((ROOT / "config" / "settings" / "production.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REQUIRED_VARIABLES" for t in node.targets):
            return ast.literal_eval(node.value)
    return []


def test_network_policies_deny_by_default():
    policies = of_kind("NetworkPolicy")
    default = [p for p in policies if p["spec"]["policyTypes"] == ["Ingress", "Egress"] and
               "ingress" not in p["spec"] and "egress" not in p["spec"]]
    assert default, "a default-deny policy"


def test_schemas_dir_only_holds_schemas_that_are_used():
    used = {f"keda.sh_v1alpha1_{d['kind'].lower()}.json" for _, d in DOCS if d["apiVersion"].startswith("keda.sh/")}
    assert {p.name for p in (K8S / "crd-schemas").glob("*.json")} == used


def test_no_manifest_path_is_forgotten():
    assert {p.name for p in K8S.glob("*.yaml")} == {
        "config.yaml", "storage.yaml", "migrate-job.yaml", "web.yaml", "ingress.yaml", "workers.yaml", "keda.yaml",
        "keda-rabbitmq.yaml", "beat.yaml", "network-policies.yaml"}
    assert Path(K8S / "README.md").exists()
