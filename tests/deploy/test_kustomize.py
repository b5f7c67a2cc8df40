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
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel

from agent.cli import settings_from_args as agent_settings
from agent.errors import SettingsError as AgentSettingsError
from collector.api.auth import role_label_ok
from collector.cli import collector_settings
from collector.cluster.resources import KINDS
from collector.errors import SettingsError
from collector.ingest.auth import agent_token_label
from collector.tokens import parse as parse_tokens
from skewwatch.cli import build_parser
from skewwatch.core.containers import k8s_expand
from skewwatch.webhook.command import register as register_webhook
from skewwatch.webhook.config import parse_config
from skewwatch.webhook.inject import CREDENTIALS_PATH, agent_container, find_inference_container
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
from tests.webhook.support import vllm_pod

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
COLLECTOR_DNS = {
    "skewwatch-collector",
    "skewwatch-collector.skewwatch",
    "skewwatch-collector.skewwatch.svc",
    "skewwatch-collector.skewwatch.svc.cluster.local",
}
# The Secrets the collector mounts: gRPC serving certificate, agent tokens, API tokens.
COLLECTOR_TLS = "skewwatch-collector-tls"
AGENT_TOKENS = "skewwatch-agent-tokens"
API_TOKENS = "skewwatch-api-tokens"
TOKENS_EXAMPLE = DEPLOY / "base" / "collector-tokens.example.yaml"
# Every rule the rendered manifests may grant, by role: deploy/README.md's RBAC table.
RBAC: dict[str, set[tuple[str, str, str]]] = {
    "ClusterRole/skewwatch-collector": {
        ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
        ("", "namespaces", "get"), ("", "namespaces", "list"), ("", "namespaces", "watch"),
        # the cluster watch: list and watch, exactly the kinds it reads
        *((group, kind.plural, verb)
          for kind in KINDS for group, _ in kind.candidates() for verb in ("list", "watch")),
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
    """A copy of deploy/ whose self-signed overlay has the files bootstrap-tls.sh writes, and whose
    agent-namespace overlay has its credentials/ (the script's CA, a fresh token), as the
    documented commands write them."""
    root = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, root, ignore=shutil.ignore_patterns("tls", "credentials"))
    subprocess.run(
        ["bash", str(root / "scripts" / "bootstrap-tls.sh")], check=True, capture_output=True, timeout=60
    )
    credentials = root / "overlays" / "agent-namespace" / "credentials"
    credentials.mkdir()
    shutil.copy(root / "overlays" / "self-signed" / "tls" / "ca.crt", credentials / "ca.crt")
    (credentials / "token").write_text(secrets.token_hex(32) + "\n")
    return root


@pytest.fixture(scope="module")
def rendered(tls_deploy: Path) -> dict[str, list[Obj]]:
    return {
        "base": render(DEPLOY / "base"),
        "cert-manager": render(DEPLOY / "overlays" / "cert-manager"),
        "self-signed": render(tls_deploy / "overlays" / "self-signed"),
        "postgresql": render(DEPLOY / "overlays" / "postgresql"),
        "agent-namespace": render(tls_deploy / "overlays" / "agent-namespace"),
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


def test_bootstrap_tls_writes_a_serving_certificate_for_the_collector_service(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    sans = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(out / "collector.crt"))
    assert {s.strip().removeprefix("DNS:") for s in sans.splitlines()[1].split(",")} == COLLECTOR_DNS
    assert "TLS Web Server Authentication" in openssl(
        "x509", "-noout", "-ext", "extendedKeyUsage", "-in", str(out / "collector.crt")
    )
    assert "OK" in openssl("verify", "-CAfile", str(out / "ca.crt"), str(out / "collector.crt"))
    assert (out / "collector.key").stat().st_mode & 0o077 == 0
    # The key belongs to the certificate.
    assert openssl("pkey", "-pubout", "-in", str(out / "collector.key")) == openssl(
        "x509", "-noout", "-pubkey", "-in", str(out / "collector.crt")
    )


def test_bootstrap_tls_keeps_its_ca_and_renews_the_serving_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    ca, cert = (out / "ca.crt").read_bytes(), (out / "tls.crt").read_bytes()
    collector_cert = (out / "collector.crt").read_bytes()
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    assert (out / "ca.crt").read_bytes() == ca
    assert (out / "tls.crt").read_bytes() != cert
    assert (out / "collector.crt").read_bytes() != collector_cert
    for name in ("tls.crt", "collector.crt"):
        assert "OK" in openssl("verify", "-CAfile", str(out / "ca.crt"), str(out / name))


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


def test_self_signed_overlay_carries_the_collectors_certificate_and_the_ca(
    rendered: dict[str, list[Obj]], tls_deploy: Path
) -> None:
    tls = tls_deploy / "overlays" / "self-signed" / "tls"
    objs = rendered["self-signed"]
    secret = one(objs, "Secret", COLLECTOR_TLS)
    assert secret["type"] == "kubernetes.io/tls"
    files = {"tls.crt": "collector.crt", "tls.key": "collector.key", "ca.crt": "ca.crt"}
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        k: (tls / f).read_bytes() for k, f in files.items()
    }
    sans = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(tls / "collector.crt"))
    names = {s.strip().removeprefix("DNS:") for s in sans.splitlines()[1].split(",")}
    assert names == service_dns_names(objs, "skewwatch-collector")
    assert COLLECTOR_TLS in secret_mounts(one(objs, "Deployment", "skewwatch-collector"))


def test_the_self_signed_overlays_keys_are_git_ignored() -> None:
    assert (DEPLOY / "overlays" / "self-signed" / ".gitignore").read_text().splitlines()[-1] == "tls/"
    ignore = (DEPLOY / "overlays" / "agent-namespace" / ".gitignore").read_text().splitlines()
    assert "credentials/" in ignore


def test_token_secret_examples_name_the_mounted_secrets_and_fail_closed(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    examples = {d["metadata"]["name"]: d for d in yaml.safe_load_all(TOKENS_EXAMPLE.read_text()) if d}
    assert set(examples) == {AGENT_TOKENS, API_TOKENS}
    assert set(examples) <= set(
        secret_mounts(one(rendered["cert-manager"], "Deployment", "skewwatch-collector"))
    )
    for name, label_ok in ((AGENT_TOKENS, agent_token_label), (API_TOKENS, role_label_ok)):
        data = examples[name]["stringData"]
        assert data and set(data.values()) == {"CHANGE-ME"}  # never a real token in the repository
        assert all(label_ok(key.split(".", 1)[0]) for key in data), name
        where = tmp_path / name
        where.mkdir()
        for key, value in data.items():
            (where / key).write_text(value)
        # A copy applied unchanged stops the collector at start instead of letting a known token in.
        with pytest.raises(SettingsError, match="a token must be"):
            parse_tokens(where, name, label_ok)
    # Not applied by any install: `kubectl apply -k` must never overwrite the real tokens.
    for install in ("base", *INSTALLS):
        assert not [s for s in of_kind(rendered[install], "Secret") if s["metadata"]["name"] in examples]


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


def test_agent_namespace_gives_the_injected_agent_tls_and_its_token_as_files(
    rendered: dict[str, list[Obj]], tls_deploy: Path, tmp_path: Path
) -> None:
    objs = rendered["agent-namespace"]
    config = parse_config(injector_config(rendered["base"]))
    credentials = one(objs, "Secret", config.credentials_secret)
    files = {k: base64.b64decode(v) for k, v in credentials["data"].items()}
    assert set(files) == {"ca.crt", "token"}
    assert files["ca.crt"] == (tls_deploy / "overlays" / "self-signed" / "tls" / "ca.crt").read_bytes()
    env = dict(one(objs, "Secret", config.collector_secret)["stringData"])
    assert env["SKEWWATCH_TLS_CA"] == f"{CREDENTIALS_PATH}/ca.crt"
    assert env["SKEWWATCH_TOKEN_FILE"] == f"{CREDENTIALS_PATH}/token"
    token = files["token"].decode().strip()
    assert all(token not in v for v in env.values())  # the token is a file, not a variable
    # The sidecar the injector builds with this config, run through the agent's own settings, with
    # its volumes made as the kubelet would: the agent speaks TLS and sends its token.
    pod = vllm_pod({"skewwatch.io/inject": "true"})
    agent = agent_container(pod, find_inference_container(pod), config).agent
    paths = {m["mountPath"]: tmp_path / m["mountPath"].lstrip("/") for m in agent["volumeMounts"]}
    paths[CREDENTIALS_PATH].mkdir(parents=True)
    paths["/tmp"].mkdir(parents=True)
    for key, data in files.items():
        (paths[CREDENTIALS_PATH] / key).write_bytes(data)

    def moved(value: str) -> str:
        under = [m for m in paths if value.startswith(m.rstrip("/") + "/")]
        return str(tmp_path) + value if under else value

    env.update({e["name"]: e["value"] for e in agent["env"] if "value" in e})
    env = {k: moved(v) for k, v in env.items()}
    args = [k8s_expand(a, env) for a in agent["args"]]
    settings = agent_settings(build_parser().parse_args([*agent["command"][1:], *args]), env)
    assert settings.collector == "skewwatch-collector.skewwatch.svc:50051"
    assert settings.tls and not settings.insecure
    assert settings.tls_ca_file == paths[CREDENTIALS_PATH] / "ca.crt"
    assert settings.token_file is not None and settings.token_file.read_text().strip() == token
    assert settings.outbox_file is not None and paths["/tmp"] in settings.outbox_file.parents
    # The Secret's collector is no loopback address: without the CA the agent refuses plaintext.
    del env["SKEWWATCH_TLS_CA"]
    with pytest.raises(AgentSettingsError, match="--insecure"):
        agent_settings(build_parser().parse_args([*agent["command"][1:], *args]), env)


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


def secret_mounts(deployment: Obj) -> dict[str, dict[str, Any]]:
    """The collector container's mounts of Secret volumes, by Secret name."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {
        volumes[m["name"]]["secret"]["secretName"]: m
        for m in spec["containers"][0]["volumeMounts"]
        if "secret" in volumes[m["name"]]
    }


def mounted(deployment: Obj, root: Path, tls: Path | None = None) -> list[str]:
    """The collector's args with each path under a Secret mount moved under ``root``, where the
    mount is made the way the kubelet would: the serving certificate (``tls``: bootstrap-tls.sh's
    files, else a fresh self-signed pair) and one token per Secret of tokens."""
    for secret, mount in secret_mounts(deployment).items():
        where = root / mount["mountPath"].lstrip("/")
        where.mkdir(parents=True)
        if secret == COLLECTOR_TLS:
            if tls is not None:
                for key, name in (
                    ("tls.crt", "collector.crt"),
                    ("tls.key", "collector.key"),
                    ("ca.crt", "ca.crt"),
                ):
                    shutil.copy(tls / name, where / key)
            else:
                openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-subj", "/CN=skewwatch-collector.skewwatch.svc", "-days", "1",
                        "-keyout", str(where / "tls.key"), "-out", str(where / "tls.crt"))  # fmt: skip
        else:
            label = "llm" if secret == AGENT_TOKENS else "read"
            (where / label).write_text(secrets.token_hex(32))
    mounts = [m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    out = []
    for arg in deployment["spec"]["template"]["spec"]["containers"][0]["args"]:
        under = [m for m in mounts if arg == m or arg.startswith(m.rstrip("/") + "/")]
        out.append(str(root) + arg if under else arg)
    return out


def test_collector_runs_the_documented_command_line_on_a_persistent_volume(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    objs = rendered["cert-manager"]
    deployment = one(objs, "Deployment", "skewwatch-collector")
    c = collector(objs)
    assert c["command"] == ["skewwatch"] and c["args"][0] == "collector"
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    settings = collector_settings(build_parser().parse_args(mounted(deployment, tmp_path)), env)
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


@pytest.mark.parametrize("install", INSTALLS)
def test_collector_serves_tls_and_takes_tokens_from_whole_secret_mounts(
    rendered: dict[str, list[Obj]], install: str, tmp_path: Path, tls_deploy: Path
) -> None:
    deployment = one(rendered[install], "Deployment", "skewwatch-collector")
    c = collector(rendered[install])
    spec = deployment["spec"]["template"]["spec"]
    # No subPath anywhere: a subPath mount is a copy the kubelet never updates, so a renewed
    # certificate or a rotated token would not reach the collector.
    assert all("subPath" not in m and "subPathExpr" not in m for m in c["volumeMounts"])
    by_secret = secret_mounts(deployment)
    assert set(by_secret) == {COLLECTOR_TLS, AGENT_TOKENS, API_TOKENS}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in by_secret.values():
        assert m["readOnly"] is True
        secret = volumes[m["name"]]["secret"]
        assert "items" not in secret and secret.get("optional") is not True  # every key; wait for it
        assert secret["defaultMode"] & 0o077 == 0o040 and spec["securityContext"]["fsGroup"] == 65532
    assert "--insecure" not in c["args"]
    assert not any(e["name"] == "SKEWWATCH_INSECURE" for e in c.get("env", []))
    tls = tls_deploy / "overlays" / "self-signed" / "tls" if install == "self-signed" else None
    settings = collector_settings(build_parser().parse_args(mounted(deployment, tmp_path, tls)), {})
    mount = {name: tmp_path / m["mountPath"].lstrip("/") for name, m in by_secret.items()}
    assert settings.tls and not settings.insecure
    assert (settings.tls_cert_file, settings.tls_key_file) == (
        mount[COLLECTOR_TLS] / "tls.crt",
        mount[COLLECTOR_TLS] / "tls.key",
    )
    assert (settings.agent_tokens, settings.api_tokens) == (mount[AGENT_TOKENS], mount[API_TOKENS])
    # The directories are what the collector's token loaders read (one file per token).
    assert settings.agent_tokens is not None and settings.api_tokens is not None
    assert [t.label for t in parse_tokens(settings.agent_tokens, "--agent-tokens", agent_token_label)] == [
        "llm"
    ]
    assert [t.label for t in parse_tokens(settings.api_tokens, "--api-tokens", role_label_ok)] == ["read"]
    # Without the TLS flags the same command line is refused: the TLS is what makes it start.
    args = mounted(deployment, tmp_path / "plain")
    i = args.index("--grpc-tls-cert")
    del args[i : i + 4]
    assert "--grpc-tls-key" not in args
    with pytest.raises(SettingsError, match="--insecure"):
        collector_settings(build_parser().parse_args(args), {})


def service_dns_names(objects: list[Obj], name: str) -> set[str]:
    """The names a Service answers to in the cluster (cluster.local, the default domain)."""
    service = one(objects, "Service", name)["metadata"]
    svc, ns = service["name"], service["namespace"]
    return {svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local"}


@pytest.mark.parametrize("install", ["cert-manager", "postgresql"])
def test_cert_manager_issues_the_collectors_certificate_for_its_service_names(
    rendered: dict[str, list[Obj]], install: str
) -> None:
    objs = rendered[install]
    (cert,) = [c for c in of_kind(objs, "Certificate") if c["spec"]["secretName"] == COLLECTOR_TLS]
    assert set(cert["spec"]["dnsNames"]) == COLLECTOR_DNS == service_dns_names(objs, "skewwatch-collector")
    assert "server auth" in cert["spec"]["usages"]
    assert cert["spec"]["privateKey"]["rotationPolicy"] == "Always"
    injector = one(objs, "Certificate", "skewwatch-injector-tls")
    # Signed by the same CA Issuer, whose Secret's ca.crt is what the agents are given.
    assert cert["spec"]["issuerRef"] == injector["spec"]["issuerRef"]
    issuer = one(objs, "Issuer", cert["spec"]["issuerRef"]["name"])
    assert "ca" in issuer["spec"]
    assert COLLECTOR_TLS in secret_mounts(one(objs, "Deployment", "skewwatch-collector"))


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
    rendered: dict[str, list[Obj]], tmp_path: Path
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
    settings = collector_settings(build_parser().parse_args(mounted(deployment, tmp_path)), {})
    assert (settings.grpc, settings.http) == ("0.0.0.0:50051", "0.0.0.0:8080")
    assert settings.tls and settings.agent_tokens is not None and settings.api_tokens is not None


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
