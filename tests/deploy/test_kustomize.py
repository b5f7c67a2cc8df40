"""deploy/: the base and every overlay render with the real kustomize, every object validates
(built-in kinds strictly against the newest Kubernetes versions kubernetes-validate ships, custom
resources against their CRDs), and the properties deploy/README.md promises hold: a webhook that
can never block pod creation and sees only opted-in pods, RBAC exactly as documented, locked-down
containers, the collector's documented command line, TLS wiring, and the dashboards and rules
shipped unchanged."""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel

from collector.cli import collector_settings
from skewwatch.cli import build_parser
from skewwatch.webhook.command import register as register_webhook
from skewwatch.webhook.config import parse_config
from skewwatch.webhook.server import make_app
from tests.deploy.kustomize import (
    DEPLOY,
    Obj,
    crd_errors,
    crd_schemas,
    describe,
    is_builtin,
    of_kind,
    one,
    render,
    validation_errors,
)

NAMESPACE = "skewwatch"
SCRIPT = DEPLOY / "scripts" / "bootstrap-tls.sh"
EXCLUDED = {"kube-system", "kube-public", NAMESPACE}
# The webhook server's routes (skewwatch/webhook/server.py): the namespace entry says the
# namespace opted in by the path it calls.
PATHS = {"pods.inject.skewwatch.io": "/mutate", "namespaces.inject.skewwatch.io": "/mutate/namespace-enabled"}
INJECTOR_DNS = {
    "skewwatch-injector",
    "skewwatch-injector.skewwatch",
    "skewwatch-injector.skewwatch.svc",
    "skewwatch-injector.skewwatch.svc.cluster.local",
}
# Every rule the rendered manifests may grant, by role: deploy/README.md's RBAC table.
RBAC: dict[str, set[tuple[str, str, str]]] = {
    "ClusterRole/skewwatch-collector": {
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
        ("", "namespaces", "get"), ("", "namespaces", "list"), ("", "namespaces", "watch"),
    },
    "ClusterRole/skewwatch-agent": {
        ("", "pods", "get"),
        ("apps", "replicasets", "get"), ("apps", "deployments", "get"), ("apps", "statefulsets", "get"),
        ("leaderworkerset.x-k8s.io", "leaderworkersets", "get"),
    },
    "ClusterRole/skewwatch-agent-nodes": {("", "nodes", "get")},
}  # fmt: skip


# --- rendering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_deploy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/ whose self-signed overlay has the files bootstrap-tls.sh writes."""
    root = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, root, ignore=shutil.ignore_patterns("tls"))
    subprocess.run(
        ["bash", str(root / "scripts" / "bootstrap-tls.sh")], check=True, capture_output=True, timeout=60
    )
    return root


@pytest.fixture(scope="module")
def rendered(tls_deploy: Path) -> dict[str, list[Obj]]:
    return {
        "base": render(DEPLOY / "base"),
        "cert-manager": render(DEPLOY / "overlays" / "cert-manager"),
        "self-signed": render(tls_deploy / "overlays" / "self-signed"),
        "postgresql": render(DEPLOY / "overlays" / "postgresql"),
        "agent-namespace": render(DEPLOY / "overlays" / "agent-namespace"),
    }


INSTALLS = ("cert-manager", "self-signed", "postgresql")


def containers(deployment: Obj) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_overlay_directory_is_rendered(rendered: dict[str, list[Obj]]) -> None:
    overlays = {p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml")}
    assert overlays == set(rendered) - {"base"}


def test_every_rendered_object_validates(rendered: dict[str, list[Obj]]) -> None:
    unique = {json.dumps(o, sort_keys=True): o for objs in rendered.values() for o in objs}
    assert validation_errors(unique.values()) == []


def test_custom_resources_have_a_crd_schema_and_the_validation_can_fail(
    rendered: dict[str, list[Obj]],
) -> None:
    custom = {(o["apiVersion"], o["kind"]) for objs in rendered.values() for o in objs if not is_builtin(o)}
    assert custom == {
        ("cert-manager.io/v1", "Issuer"),
        ("cert-manager.io/v1", "Certificate"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    assert custom <= set(crd_schemas())
    cert = one(rendered["cert-manager"], "Certificate", "skewwatch-injector-tls")
    typo = json.loads(json.dumps(cert))
    typo["spec"]["dnsName"] = typo["spec"].pop("dnsNames")
    assert any("dnsName" in e for e in crd_errors(typo))
    typo["spec"]["dnsNames"] = typo["spec"].pop("dnsName")
    typo["metadata"]["label"] = {"a": "b"}
    assert [e for e in crd_errors(typo) if "label" in e]


def test_builtin_validation_is_strict() -> None:
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    assert any("portz" in e for e in validation_errors([bad]))


def test_every_install_is_in_the_skewwatch_namespace_and_names_are_unique(
    rendered: dict[str, list[Obj]],
) -> None:
    for name in ("base", *INSTALLS):
        keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in rendered[name]]
        assert len(keys) == len(set(keys)), name
        for o in rendered[name]:
            if is_builtin(o) and o["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
                continue
            if o["kind"] == "MutatingWebhookConfiguration":
                continue
            assert o["metadata"].get("namespace") == NAMESPACE, describe(o)


# --- the webhook -------------------------------------------------------------------------------


def webhooks(objects: list[Obj]) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = one(objects, "MutatingWebhookConfiguration", "skewwatch-injector")[
        "webhooks"
    ]
    return hooks


@pytest.mark.parametrize("install", INSTALLS)
def test_webhook_can_never_block_pod_creation(rendered: dict[str, list[Obj]], install: str) -> None:
    hooks = webhooks(rendered[install])
    assert [h["name"] for h in hooks] == ["pods.inject.skewwatch.io", "namespaces.inject.skewwatch.io"]
    for h in hooks:
        assert h["failurePolicy"] == "Ignore"
        assert h["timeoutSeconds"] <= 5
        assert h["sideEffects"] == "None"
        assert h["reinvocationPolicy"] == "IfNeeded"
        assert h["admissionReviewVersions"] == ["v1"]
        assert h["rules"] == [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
             "scope": "Namespaced"}
        ]  # fmt: skip
        assert h["matchConditions"]
        assert h["clientConfig"]["service"] == {
            "name": "skewwatch-injector",
            "namespace": NAMESPACE,
            "path": PATHS[h["name"]],
            "port": 8443,
        }
        excluded = [
            e for e in h["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"
        ]
        assert len(excluded) == 1 and excluded[0]["operator"] == "NotIn"
        assert set(excluded[0]["values"]) == EXCLUDED
    assert hooks[1]["namespaceSelector"]["matchLabels"] == {"skewwatch.io/inject": "enabled"}
    assert "matchLabels" not in hooks[0]["namespaceSelector"]


def test_webhook_paths_and_probe_are_routes_of_the_webhook_server(rendered: dict[str, list[Obj]]) -> None:
    app, _ = make_app(parse_config(injector_config(rendered["base"])))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for h in webhooks(rendered["base"]):
        assert ("POST", h["clientConfig"]["service"]["path"]) in routes
    c = one(rendered["base"], "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]["containers"][0]
    assert ("GET", c["readinessProbe"]["httpGet"]["path"]) in routes


def sent(hook: dict[str, Any], annotations: dict[str, str] | None) -> bool:
    """Whether the API server sends this pod to the webhook: every matchCondition true."""
    env = celpy.Environment()
    meta: dict[str, Any] = {"name": "vllm-0", "namespace": "llm"}
    if annotations is not None:
        meta["annotations"] = annotations
    activation = {"object": json_to_cel({"apiVersion": "v1", "kind": "Pod", "metadata": meta})}
    return all(
        bool(env.program(env.compile(c["expression"])).evaluate(activation)) for c in hook["matchConditions"]
    )


@pytest.mark.parametrize(
    ("annotations", "by_pod", "by_namespace"),
    [
        (None, False, True),
        ({}, False, True),
        ({"other": "x"}, False, True),
        ({"skewwatch.io/inject": "true"}, True, False),
        ({"skewwatch.io/inject": "false"}, False, False),
        ({"skewwatch.io/inject": "True"}, False, True),
    ],
)
def test_match_conditions_send_only_opted_in_pods_and_each_once(
    rendered: dict[str, list[Obj]], annotations: dict[str, str] | None, by_pod: bool, by_namespace: bool
) -> None:
    """The pod entry takes exactly skewwatch.io/inject: "true"; the namespace entry (only reached
    in a labelled namespace) every other pod but an explicit "false", so no pod goes twice."""
    pod_hook, namespace_hook = webhooks(rendered["base"])
    assert sent(pod_hook, annotations) is by_pod
    assert sent(namespace_hook, annotations) is by_namespace


def test_cert_manager_injects_the_ca_of_the_serving_certificate_the_injector_mounts(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["cert-manager"]
    annotation = one(objs, "MutatingWebhookConfiguration", "skewwatch-injector")["metadata"]["annotations"]
    ns, name = annotation["cert-manager.io/inject-ca-from"].split("/")
    serving = one(objs, "Certificate", name)
    assert ns == serving["metadata"]["namespace"] == NAMESPACE
    assert set(serving["spec"]["dnsNames"]) == INJECTOR_DNS
    assert "server auth" in serving["spec"]["usages"]
    assert serving["spec"]["secretName"] == injector_tls_secret(objs)
    ca_issuer = one(objs, "Issuer", serving["spec"]["issuerRef"]["name"])
    ca_cert = [
        c
        for c in of_kind(objs, "Certificate")
        if c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]
    ]
    assert len(ca_cert) == 1 and ca_cert[0]["spec"]["isCA"] is True
    root = one(objs, "Issuer", ca_cert[0]["spec"]["issuerRef"]["name"])
    assert root["spec"] == {"selfSigned": {}}


def injector_tls_secret(objects: list[Obj]) -> str:
    volumes = one(objects, "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]["volumes"]
    name: str = next(v["secret"]["secretName"] for v in volumes if v["name"] == "tls")
    return name


# --- the bootstrap script ---------------------------------------------------------------------


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, timeout=30).stdout


def test_bootstrap_tls_writes_a_serving_certificate_for_the_injector_service(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    sans = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "tls.crt"))
    assert {s.strip().removeprefix("DNS:") for s in sans.splitlines()[1].split(",")} == INJECTOR_DNS
    assert "TLS Web Server Authentication" in openssl(
        "x509", "-noout", "-ext", "extendedKeyUsage", "-in", str(out / "tls.crt")
    )
    assert "CA:TRUE" in openssl("x509", "-noout", "-ext", "basicConstraints", "-in", str(out / "ca.crt"))
    assert "OK" in openssl("verify", "-CAfile", str(out / "ca.crt"), str(out / "tls.crt"))
    assert (out / "ca.key").stat().st_mode & 0o077 == 0
    assert (out / "tls.key").stat().st_mode & 0o077 == 0


def test_bootstrap_tls_keeps_its_ca_and_renews_the_serving_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    ca, cert = (out / "ca.crt").read_bytes(), (out / "tls.crt").read_bytes()
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    assert (out / "ca.crt").read_bytes() == ca
    assert (out / "tls.crt").read_bytes() != cert
    assert "OK" in openssl("verify", "-CAfile", str(out / "ca.crt"), str(out / "tls.crt"))


def test_self_signed_overlay_carries_the_scripts_ca_and_certificate(
    rendered: dict[str, list[Obj]], tls_deploy: Path
) -> None:
    tls = tls_deploy / "overlays" / "self-signed" / "tls"
    objs = rendered["self-signed"]
    bundle = base64.b64encode((tls / "ca.crt").read_bytes()).decode()
    assert [h["clientConfig"]["caBundle"] for h in webhooks(objs)] == [bundle, bundle]
    secret = one(objs, "Secret", injector_tls_secret(objs))
    assert secret["type"] == "kubernetes.io/tls"
    assert base64.b64decode(secret["data"]["tls.crt"]) == (tls / "tls.crt").read_bytes()
    assert base64.b64decode(secret["data"]["tls.key"]) == (tls / "tls.key").read_bytes()


def test_the_self_signed_overlays_keys_are_git_ignored() -> None:
    assert (DEPLOY / "overlays" / "self-signed" / ".gitignore").read_text().splitlines()[-1] == "tls/"


# --- RBAC ----------------------------------------------------------------------------------------


def granted(objects: list[Obj]) -> Iterator[tuple[str, tuple[str, str, str]]]:
    for o in objects:
        if o["kind"] in {"Role", "ClusterRole"}:
            for rule in o["rules"]:
                assert set(rule) <= {"apiGroups", "resources", "verbs"}, describe(o)  # no resourceNames, URLs
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            yield f"{o['kind']}/{o['metadata']['name']}", (group, resource, verb)


@pytest.mark.parametrize("install", INSTALLS)
def test_rbac_grants_exactly_the_documented_rules(rendered: dict[str, list[Obj]], install: str) -> None:
    rules: dict[str, set[tuple[str, str, str]]] = {}
    for role, rule in granted(rendered[install]):
        rules.setdefault(role, set()).add(rule)
    assert rules == RBAC
    every = {r for rs in rules.values() for r in rs}
    assert not any("*" in part for r in every for part in r)
    assert not any(resource == "secrets" for _, resource, _ in every)


def test_collector_role_is_bound_to_the_collector_only(rendered: dict[str, list[Obj]]) -> None:
    binding = one(rendered["base"], "ClusterRoleBinding", "skewwatch-collector")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "skewwatch-collector",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "skewwatch-collector", "namespace": NAMESPACE}
    ]
    assert len(list(of_kind(rendered["base"], "ClusterRoleBinding"))) == 1
    assert not list(of_kind(rendered["base"], "RoleBinding"))


def test_agent_namespace_binds_the_pod_reads_in_its_namespace_only(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["agent-namespace"]
    pods = one(objs, "RoleBinding", "skewwatch-agent")
    assert pods["roleRef"]["name"] == "skewwatch-agent"
    nodes = one(objs, "ClusterRoleBinding", "skewwatch-agent-nodes-llm")
    assert nodes["roleRef"]["name"] == "skewwatch-agent-nodes"
    for b in (pods, nodes):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": "llm"}]
    secret = one(objs, "Secret", "skewwatch-agent")
    assert secret["stringData"]["SKEWWATCH_COLLECTOR"] == "skewwatch-collector.skewwatch.svc:50051"
    assert parse_config(injector_config(rendered["base"])).collector_secret == secret["metadata"]["name"]


def injector_config(objects: list[Obj]) -> str:
    volumes = one(objects, "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if v["name"] == "config")
    text: str = one(objects, "ConfigMap", name)["data"]["config.yaml"]
    return text


def test_injector_config_loads_with_the_webhooks_parser_and_excludes_what_the_webhook_excludes(
    rendered: dict[str, list[Obj]],
) -> None:
    config = parse_config(injector_config(rendered["base"]), "injector-config.yaml")
    assert config.namespace == NAMESPACE
    assert all(config.excluded(ns) for ns in EXCLUDED)
    assert config.sidecar_mode == "native"
    assert config.image.startswith("skewwatch-agent")


# --- workloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("install", INSTALLS)
def test_every_container_runs_locked_down_as_uid_65532(rendered: dict[str, list[Obj]], install: str) -> None:
    deployments = list(of_kind(rendered[install], "Deployment"))
    assert {d["metadata"]["name"] for d in deployments} == {"skewwatch-collector", "skewwatch-injector"}
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
        for c in containers(d):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert sc.get("privileged") is not True, c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
            assert "memory" in c["resources"]["limits"], c["name"]
    injector = one(deployments, "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]
    assert injector["automountServiceAccountToken"] is False


def collector(objects: list[Obj]) -> dict[str, Any]:
    c: dict[str, Any] = one(objects, "Deployment", "skewwatch-collector")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return c


def test_collector_runs_the_documented_command_line_on_a_persistent_volume(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["cert-manager"]
    deployment = one(objs, "Deployment", "skewwatch-collector")
    c = collector(objs)
    assert c["command"] == ["skewwatch"] and c["args"][0] == "collector"
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    settings = collector_settings(build_parser().parse_args(c["args"]), env)
    assert (settings.grpc, settings.http, settings.store) == (
        "0.0.0.0:50051", "0.0.0.0:8080", "sqlite:////data/skewwatch.db"
    )  # fmt: skip
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": 50051, "http": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    data = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == data["name"])
    one(objs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_injector_runs_the_webhook_command_with_the_mounted_certificate(
    rendered: dict[str, list[Obj]],
) -> None:
    c = one(rendered["base"], "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["skewwatch"]
    args = c["args"]
    assert args[0] == "webhook"
    flags = dict(zip(args[1::2], args[2::2], strict=True))
    assert flags["--listen"] == "0.0.0.0:8443"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert (
        flags["--tls-cert"] == f"{mounts['tls']}/tls.crt" and flags["--tls-key"] == f"{mounts['tls']}/tls.key"
    )
    assert flags["--config"] == mounts["config"]
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "webhook", "scheme": "HTTPS"}
    parser = argparse.ArgumentParser(prog="skewwatch")
    register_webhook(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(args)
    assert (parsed.command, str(parsed.tls_cert), str(parsed.tls_key)) == (
        "webhook",
        flags["--tls-cert"],
        flags["--tls-key"],
    )


def test_postgresql_overlay_takes_the_store_from_a_secret_and_runs_replicas(
    rendered: dict[str, list[Obj]],
) -> None:
    objs = rendered["postgresql"]
    deployment = one(objs, "Deployment", "skewwatch-collector")
    c = collector(objs)
    assert "--store" not in c["args"] and not any(a.startswith("--store=") for a in c["args"])
    store = [e for e in c["env"] if e["name"] == "SKEWWATCH_STORE"]
    assert store == [
        {
            "name": "SKEWWATCH_STORE",
            "valueFrom": {"secretKeyRef": {"name": "skewwatch-postgresql", "key": "url"}},
        }
    ]
    assert deployment["spec"]["replicas"] > 1
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not list(of_kind(objs, "PersistentVolumeClaim"))
    assert all(
        "persistentVolumeClaim" not in v for v in deployment["spec"]["template"]["spec"].get("volumes", [])
    )
    assert all(m["mountPath"] != "/data" for m in c.get("volumeMounts", []))
    settings = collector_settings(build_parser().parse_args(c["args"]), {})
    assert (settings.grpc, settings.http) == ("0.0.0.0:50051", "0.0.0.0:8080")


@pytest.mark.parametrize("install", INSTALLS)
def test_services_select_their_pods_and_name_their_ports(
    rendered: dict[str, list[Obj]], install: str
) -> None:
    objs = rendered[install]
    expected = {"skewwatch-collector": {"grpc": 50051, "http": 8080}, "skewwatch-injector": {"webhook": 8443}}
    for name, ports in expected.items():
        service = one(objs, "Service", name)
        pod = one(objs, "Deployment", name)["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
        named = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
        pdb = one(objs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_network_policies_admit_what_deploy_readme_says(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["base"]
    ingress = one(objs, "NetworkPolicy", "skewwatch-collector")["spec"]["ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in ingress}
    assert by_port[50051] == [{"namespaceSelector": {}}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in by_port[
        8080
    ]
    assert {"podSelector": {}} in by_port[8080]
    assert set(by_port) == {50051, 8080}
    injector = one(objs, "NetworkPolicy", "skewwatch-injector")["spec"]
    assert injector["ingress"] == [{"ports": [{"port": 8443, "protocol": "TCP"}]}]


# --- monitoring ----------------------------------------------------------------------------------


def test_dashboards_configmap_holds_every_dashboard_unchanged(rendered: dict[str, list[Obj]]) -> None:
    cm = one(rendered["base"], "ConfigMap", "skewwatch-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert files and cm["data"] == files


def test_prometheusrule_is_the_shipped_file(rendered: dict[str, list[Obj]]) -> None:
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "skewwatch-prometheusrule.yaml").read_text())
    assert one(rendered["base"], "PrometheusRule", shipped["metadata"]["name"])["spec"] == shipped["spec"]


def test_servicemonitor_scrapes_the_collectors_metrics_port(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["base"]
    monitor = one(objs, "ServiceMonitor", "skewwatch-collector")["spec"]
    service = one(objs, "Service", "skewwatch-collector")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert monitor["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_every_deploy_path_the_install_docs_name_exists() -> None:
    for doc in (DEPLOY / "README.md", DEPLOY.parent / "docs" / "install.md"):
        named = set(re.findall(r"(?<![\w/])deploy/[\w./-]*[\w/]", doc.read_text()))
        assert named, doc
        missing = sorted(p for p in named if not (DEPLOY.parent / p).exists() and "/tls" not in p)
        assert missing == [], doc
