"""compose/k8s: every manifest validates against the Kubernetes OpenAPI schemas shipped in the
kubernetes-validate wheel (strict: unknown fields are errors), and the pieces fit together: probes on /health
at the served port, Services selecting the right pods, the ConfigMap accepted by `oglog serve` for every role,
ClickHouse as an external DSN, NATS with JetStream, and an Ingress with HAProxy's routing table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from oglogstream.stack.config import ROLES
from oglogstream.stack.server import cli

from reference_stack.server.stop_deadline import stop_deadline
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "compose" / "k8s"
HAPROXY_CFG = ROOT / "compose" / "haproxy" / "haproxy.cfg"
#: Oldest Kubernetes minor the manifests are checked against (besides the newest the wheel knows).
OLDEST_KUBERNETES = "1.29.0"
#: Stands in for the Secret the operator creates (docs/deploy.md).
EXAMPLE_DSN = "http://oglog:s3cret@clickhouse.example.internal:8123/oglog"
SERVE_VARIABLES = {name for name in cli._ENV_NAMES.values() if name != "roles"} | {"CLICKHOUSE_URL"}
IMAGE_UID = 10001  # compose/Dockerfile's `USER 10001:10001`


def manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, document) for every YAML document under compose/k8s."""
    require("yaml")
    import yaml

    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                yield path, doc


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def role_deployments() -> dict[str, dict[str, Any]]:
    """role -> its Deployment."""
    found = {}
    for doc in resources("Deployment").values():
        found[doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]] = doc
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def config_data() -> dict[str, str]:
    (configmap,) = resources("ConfigMap").values()
    return {key: str(value) for key, value in configmap["data"].items()}


def kubernetes_versions() -> list[str]:
    require("kubernetes_validate")
    from kubernetes_validate import utils

    return [OLDEST_KUBERNETES, utils.latest_version()]


def test_every_manifest_validates_strictly() -> None:
    """Each document is a valid object of its apiVersion/kind for the oldest and newest Kubernetes supported,
    with no unknown fields."""
    require("kubernetes_validate")
    import kubernetes_validate

    checked = 0
    for path, doc in manifests():
        if doc.get("kind") == "Kustomization":  # kustomize's own file, not an API object
            continue
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
        assert doc["metadata"].get("namespace") == "oglogstream" or doc["kind"] == "Namespace", path
        for version in kubernetes_versions():
            kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 10


def test_the_validator_rejects_a_misspelt_field() -> None:
    """The schema check is real: `readinesProbe` (a typo) is refused."""
    require("kubernetes_validate")
    import kubernetes_validate

    deployment = role_deployments()["ingest"]
    spec = container(deployment)
    spec["readinesProbe"] = spec.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, kubernetes_versions()[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k compose/k8s` applies every file in the folder, and sets the namespace and image."""
    (kustomization,) = [doc for _, doc in manifests() if doc["kind"] == "Kustomization"]
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "oglogstream"
    images = {container(d)["image"].split(":")[0] for d in role_deployments().values()}
    assert images == {image["name"] for image in kustomization["images"]}


def test_one_deployment_per_role_serving_it() -> None:
    """ingest, process and query each have a Deployment of the one image, whose arguments are that role."""
    deployments = role_deployments()
    assert sorted(deployments) == sorted(ROLES)
    assert len({container(d)["image"] for d in deployments.values()}) == 1
    for role, deployment in deployments.items():
        assert container(deployment)["args"] == [role]
        assert cli.build_parser().parse_args(["serve", *container(deployment)["args"]]).roles == [role]
        assert deployment["spec"]["replicas"] >= 2, f"{role}: one pod is no scale-out"


def test_configmap_builds_a_stack_config_for_every_role() -> None:
    """The ConfigMap (plus the ClickHouse Secret for process and query) goes through `oglog serve`'s own
    parsing for each role; ClickHouse is a server named by the Secret, never the chDB default."""
    data = config_data()
    assert set(data) <= SERVE_VARIABLES, f"not read by `oglog serve`: {sorted(set(data) - SERVE_VARIABLES)}"
    assert "CLICKHOUSE_DSN" not in data, "the DSN carries a password: it belongs in the Secret"
    for role, deployment in role_deployments().items():
        sources = container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "oglog-config"}} in sources
        secret = {"secretRef": {"name": "oglog-clickhouse"}}
        env = dict(data)
        if role in ("process", "query"):
            assert secret in sources, f"{role}: needs the ClickHouse DSN (not optional: no silent chDB)"
            env["CLICKHOUSE_DSN"] = EXAMPLE_DSN
        else:
            assert secret not in sources
        assert {"secretRef": {"name": "oglog-api-keys"}} in sources, f"{role}: API keys (docs/security.md)"
        env["OGLOG_API_KEYS"] = "ingest:" + "k" * 32
        config = cli.config_from_env([role], env)
        assert config.roles == (role,) and config.host == "0.0.0.0" and config.auth_enabled
        if role != "ingest":
            assert config.clickhouse_dsn == EXAMPLE_DSN
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        deadline = stop_deadline(config.shutdown_timeout)
        assert grace > deadline, f"{role}: the kubelet would kill a draining pod"


def test_probes_hit_health_on_the_served_port() -> None:
    """Readiness, liveness and startup probes GET /health on the container port the role listens on
    (HTTP_PORT)."""
    port = int(config_data()["HTTP_PORT"])
    for role, deployment in role_deployments().items():
        spec = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert ports == {"http": port}, role
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = spec[probe]["httpGet"]
            assert get["path"] == "/health", (role, probe)
            assert ports.get(get["port"], get["port"]) == port, (role, probe)
        # Liveness must tolerate a dependency outage longer than readiness does (no restart storms).
        live, ready = spec["livenessProbe"], spec["readinessProbe"]
        assert (
            live["periodSeconds"] * live["failureThreshold"]
            > ready["periodSeconds"] * ready["failureThreshold"]
        )


def test_pods_run_as_the_image_user_without_privileges() -> None:
    """Role pods run as the Dockerfile's non-root uid, read-only, with no capabilities."""
    for role, deployment in role_deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == IMAGE_UID, role
        ctx = container(deployment)["securityContext"]
        assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
        assert ctx["capabilities"]["drop"] == ["ALL"]


def test_services_and_budgets_select_their_role() -> None:
    """ingest and query have Services whose selectors match their pods and whose target port exists;
    every role has a PodDisruptionBudget over its own pods."""
    deployments = role_deployments()
    services = resources("Service")
    for role in ("ingest", "query"):
        service = services[f"oglog-{role}"]
        labels = deployments[role]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployments[role]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        names = {p["name"] for p in container(deployments[role])["ports"]}
        assert all(p["targetPort"] in names for p in service["spec"]["ports"])
    budgets = resources("PodDisruptionBudget")
    for role, deployment in deployments.items():
        selector = budgets[f"oglog-{role}"]["spec"]["selector"]["matchLabels"]
        assert selector == deployment["spec"]["selector"]["matchLabels"]


def test_nats_statefulset_runs_jetstream_on_a_volume_behind_nats_url() -> None:
    """NATS_URL names a Service on 4222 selecting a StatefulSet that runs nats-server with JetStream, its
    store on a persistent volume claim."""
    nats = urlsplit(config_data()["NATS_URL"])
    service = resources("Service")[nats.hostname or ""]
    assert [p["port"] for p in service["spec"]["ports"]] == [nats.port]
    statefulset = resources("StatefulSet")["nats"]
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert statefulset["spec"]["serviceName"] in resources("Service")
    spec = container(statefulset)
    args = spec["args"]
    assert "--jetstream" in args
    store = args[args.index("--store_dir") + 1]
    claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
    assert {(m["name"], m["mountPath"]) for m in spec["volumeMounts"]} == {(name, store) for name in claims}
    assert spec["readinessProbe"]["httpGet"]["path"].startswith("/healthz")


def test_ingress_routes_like_haproxy() -> None:
    """The Ingress sends exactly HAProxy's write paths to ingest and everything else to query."""
    cfg = HAPROXY_CFG.read_text()
    write_paths = set(re.search(r"^\s*acl write_api path (.+)$", cfg, re.M).group(1).split())  # type: ignore[union-attr]
    (ingress,) = resources("Ingress").values()
    routes = {
        (p["path"], p["pathType"]): p["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    expected = {(path, "Exact"): "oglog-ingest" for path in write_paths}
    expected[("/", "Prefix")] = "oglog-query"
    assert routes == expected
    services = resources("Service")
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            ports = {port["name"] for port in services[p["backend"]["service"]["name"]]["spec"]["ports"]}
            assert p["backend"]["service"]["port"]["name"] in ports
