"""The answer to one AdmissionReview, without a server: who is injected, what the agent gets,
and every review that is admitted unchanged (with the reason as a warning where it is wrong)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from agent.sources.process import locate
from skewwatch.core.containers import k8s_expand
from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.errors import ReviewError
from skewwatch.webhook.inject import AGENT_CONTAINER, engine_match
from skewwatch.webhook.review import Answer, answer, read_review
from tests.webhook.support import patched, pod_review, validate_pod, vllm_pod

CONFIG = WebhookConfig()
OPT_IN = {"skewwatch.io/inject": "true"}


def _agent(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    found = [
        c
        for part in ("initContainers", "containers")
        for c in spec.get(part, [])
        if c["name"] == AGENT_CONTAINER
    ]
    assert len(found) == 1
    agent: dict[str, Any] = found[0]
    return agent


def _inject(pod: dict[str, Any], config: WebhookConfig = CONFIG, **kw: Any) -> tuple[Answer, dict[str, Any]]:
    a = answer(pod_review(pod, **kw), config)
    assert a.outcome == "injected", a.reason
    return a, patched(pod, a)


def _unchanged(a: Answer) -> None:
    assert a.review["response"]["allowed"] is True
    assert "patch" not in a.review["response"] and "patchType" not in a.review["response"]


def test_annotated_pod_gets_the_agent_as_a_native_sidecar_watching_the_engine_container() -> None:
    a, pod = _inject(vllm_pod(OPT_IN))
    assert a.review["response"]["uid"] == "0f3c7a52-5e2b-4c1e-9a53-2d8e4c1b7a10"
    agent = _agent(pod)
    assert pod["spec"]["initContainers"] == [agent] and agent["restartPolicy"] == "Always"
    assert pod["spec"]["shareProcessNamespace"] is True
    assert pod["metadata"]["annotations"]["skewwatch.io/injected"] == "vllm"  # not the first, "proxy"
    assert agent["args"][:2] == ["--collector", "$(SKEWWATCH_COLLECTOR)"]
    assert agent["args"][-2] == "--match"
    assert k8s_expand(agent["args"][-1], {}) == engine_match_for("vllm serve")  # as the kubelet passes it
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in agent["volumeMounts"]
    assert all(m["name"] != "shm" for m in agent["volumeMounts"])  # not where the model is
    assert agent["envFrom"] == [{"secretRef": {"name": "skewwatch-agent", "optional": True}}]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"] if "valueFrom" in e}
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "POD_UID": "metadata.uid",
        "NODE_NAME": "spec.nodeName",
    }
    literal = {e["name"]: e["value"] for e in agent["env"] if "value" in e}
    assert literal == {"SKEWWATCH_OUTBOX_FILE": "/tmp/skewwatch-outbox"}
    tmp = next(m for m in agent["volumeMounts"] if m["name"] == "skewwatch-tmp")
    assert tmp["mountPath"] == "/tmp" and literal["SKEWWATCH_OUTBOX_FILE"].startswith("/tmp/")
    sc = agent["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    podinfo = next(v for v in pod["spec"]["volumes"] if v["name"] == "skewwatch-podinfo")
    paths = {i["path"]: i["fieldRef"]["fieldPath"] for i in podinfo["downwardAPI"]["items"]}
    assert paths["labels"] == "metadata.labels" and paths["annotations"] == "metadata.annotations"
    validate_pod(pod)


def engine_match_for(command: str) -> str:
    return str(engine_match(locate(command.split())))


def test_the_match_regex_finds_the_engine_command_line_the_agent_will_see() -> None:
    pattern = re.compile(engine_match_for("vllm serve"))
    assert pattern.search("/usr/bin/python3 /usr/local/bin/vllm serve /models/x --dtype auto")
    assert not pattern.search("vllm-router --port 80")
    module = re.compile(engine_match_for("python3 -m sglang.launch_server"))
    assert module.search("python3 -m sglang.launch_server --model-path /m")


def test_container_mode_appends_the_agent_right_after_the_inference_container() -> None:
    _, pod = _inject(vllm_pod({**OPT_IN, "skewwatch.io/sidecar-mode": "container"}))
    names = [c["name"] for c in pod["spec"]["containers"]]
    assert names == ["proxy", "vllm", AGENT_CONTAINER] and "initContainers" not in pod["spec"]
    assert "restartPolicy" not in _agent(pod)
    validate_pod(pod)


def test_config_file_defaults_and_annotations_override_them() -> None:
    config = WebhookConfig(
        image="registry.local/agent:1", collector="collector.sw:7070", sidecar_mode="container"
    )
    _, pod = _inject(vllm_pod(OPT_IN), config)
    agent = _agent(pod)
    assert agent["image"] == "registry.local/agent:1"
    assert {"name": "SKEWWATCH_COLLECTOR", "value": "collector.sw:7070"} in agent["env"]
    ann = {
        **OPT_IN,
        "skewwatch.io/image": "registry.local/agent:2",
        "skewwatch.io/collector": "other:7070",
        "skewwatch.io/collector-secret": "team-a-agent",
        "skewwatch.io/sidecar-mode": "native",
        "skewwatch.io/cpu-limit": "250m",
        "skewwatch.io/memory-request": "64Mi",
        "skewwatch.io/interval": "5",
        "skewwatch.io/match": "vllm serve$(FOO)",
        "skewwatch.io/container": "vllm",
    }
    _, pod = _inject(vllm_pod(ann), config)
    agent = _agent(pod)
    assert agent["image"] == "registry.local/agent:2" and "restartPolicy" in agent
    assert {"name": "SKEWWATCH_COLLECTOR", "value": "other:7070"} in agent["env"]
    assert agent["envFrom"][0]["secretRef"]["name"] == "team-a-agent"
    assert (
        agent["resources"]["limits"]["cpu"] == "250m" and agent["resources"]["requests"]["memory"] == "64Mi"
    )
    assert agent["args"] == [
        "--collector",
        "$(SKEWWATCH_COLLECTOR)",
        "--interval",
        "5",
        "--match",
        "vllm serve$$(FOO)",
    ]
    assert k8s_expand(agent["args"][-1], {"FOO": "x"}) == "vllm serve$(FOO)"  # not expanded by the kubelet


@pytest.mark.parametrize(
    ("annotation", "value", "says"),
    [
        ("skewwatch.io/container", "nope", "no container named 'nope'"),
        ("skewwatch.io/model-volumes", "models,cache", "no volume named 'cache'"),
        ("skewwatch.io/sidecar-mode", "daemon", "expected native or container"),
        ("skewwatch.io/cpu-limit", "lots", "not a Kubernetes quantity"),
        ("skewwatch.io/interval", "-1", "expected seconds"),
        ("skewwatch.io/match", "(", "not a regex"),
        ("skewwatch.io/credentials-secret", "Team_A", "not a Secret name"),
        ("skewwatch.io/credentials-secret", "", "not a Secret name"),
    ],
)
def test_an_annotation_the_webhook_cannot_take_admits_the_pod_unchanged_with_a_warning(
    annotation: str, value: str, says: str
) -> None:
    a = answer(pod_review(vllm_pod({**OPT_IN, annotation: value})), CONFIG)
    _unchanged(a)
    assert a.outcome == "warned"
    (warning,) = a.review["response"]["warnings"]
    assert annotation in warning and says in warning


def test_the_agent_mounts_the_namespaces_credentials_secret_read_only_without_subpath() -> None:
    _, pod = _inject(vllm_pod(OPT_IN))
    agent = _agent(pod)
    (mount,) = [m for m in agent["volumeMounts"] if m["name"] == "skewwatch-credentials"]
    assert mount == {
        "name": "skewwatch-credentials",
        "mountPath": "/etc/skewwatch/credentials",
        "readOnly": True,
    }
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "skewwatch-credentials"]
    assert volume["secret"] == {
        "secretName": "skewwatch-agent-credentials",
        "optional": True,
        "defaultMode": 0o444,
    }
    # Only the sidecar sees the CA and the token.
    others = [
        c for part in ("containers", "initContainers") for c in pod["spec"].get(part, []) if c is not agent
    ]
    assert others and all(
        m["name"] != "skewwatch-credentials" for c in others for m in c.get("volumeMounts", [])
    )
    # The token is a file, never a variable.
    assert not any("TOKEN" in e["name"] and "value" in e for e in agent["env"])
    validate_pod(pod)


def test_credentials_secret_comes_from_the_config_or_the_annotation_and_empty_mounts_none() -> None:
    config = WebhookConfig(credentials_secret="sw-creds")
    _, pod = _inject(vllm_pod(OPT_IN), config)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "skewwatch-credentials"]
    assert volume["secret"]["secretName"] == "sw-creds"
    _, pod = _inject(vllm_pod({**OPT_IN, "skewwatch.io/credentials-secret": "team-a-creds"}), config)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "skewwatch-credentials"]
    assert volume["secret"]["secretName"] == "team-a-creds"
    _, pod = _inject(vllm_pod(OPT_IN), WebhookConfig(credentials_secret=""))
    assert all(v["name"] != "skewwatch-credentials" for v in pod["spec"]["volumes"])
    assert all(m["name"] != "skewwatch-credentials" for m in _agent(pod)["volumeMounts"])
    validate_pod(pod)


def test_a_pod_with_its_own_skewwatch_credentials_volume_is_not_overwritten() -> None:
    pod = vllm_pod(OPT_IN)
    pod["spec"]["volumes"].append({"name": "skewwatch-credentials", "emptyDir": {}})
    a = answer(pod_review(pod), CONFIG)
    _unchanged(a)
    assert a.outcome == "warned" and "skewwatch-credentials" in a.review["response"]["warnings"][0]


def test_model_volumes_annotation_picks_the_mounts_and_a_hub_model_mounts_none_by_itself() -> None:
    pod = vllm_pod(OPT_IN)
    pod["spec"]["containers"][1]["command"] = ["vllm", "serve", "meta-llama/Llama-3.1-8B"]
    _, out = _inject(pod)
    assert [m["name"] for m in _agent(out)["volumeMounts"]] == [
        "skewwatch-podinfo",
        "skewwatch-tmp",
        "skewwatch-credentials",
    ]
    pod["metadata"]["annotations"]["skewwatch.io/model-volumes"] = "models, shm"
    _, out = _inject(pod)
    mounts = {m["name"]: m for m in _agent(out)["volumeMounts"]}
    assert mounts["models"]["readOnly"] and mounts["shm"] == {
        "name": "shm",
        "mountPath": "/dev/shm",
        "readOnly": True,
    }


def test_download_dir_and_hf_cache_env_find_their_mounts() -> None:
    pod = vllm_pod(OPT_IN)
    c = pod["spec"]["containers"][1]
    c["command"] = ["vllm", "serve", "org/model", "--download-dir", "/models/cache"]
    _, out = _inject(pod)
    assert "models" in {m["name"] for m in _agent(out)["volumeMounts"]}
    c["command"] = ["vllm", "serve", "org/model"]
    c["env"] = [{"name": "HF_HOME", "value": "/dev/shm/hf"}]
    _, out = _inject(pod)
    assert {m["name"] for m in _agent(out)["volumeMounts"]} >= {"shm"}


def test_the_agent_runs_as_the_inference_containers_uid() -> None:
    pod = vllm_pod(OPT_IN)
    pod["spec"]["containers"][1]["securityContext"] = {"runAsUser": 1001}
    _, out = _inject(pod)
    assert _agent(out)["securityContext"]["runAsUser"] == 1001
    pod["spec"]["containers"][1].pop("securityContext")
    pod["spec"]["securityContext"] = {"runAsUser": 2000}
    _, out = _inject(pod)
    assert "runAsUser" not in _agent(out)["securityContext"]  # the pod's, inherited
    pod["spec"].pop("securityContext")
    _, out = _inject(pod)
    assert _agent(out)["securityContext"]["runAsUser"] == 65532  # the agent image's USER


def test_an_engine_running_as_root_is_watched_by_a_root_agent() -> None:
    pod = vllm_pod(OPT_IN)
    pod["spec"]["containers"][1]["securityContext"] = {"runAsUser": 0}
    _, out = _inject(pod)
    sc = _agent(out)["securityContext"]
    assert sc["runAsUser"] == 0 and "runAsNonRoot" not in sc and sc["capabilities"]["drop"] == ["ALL"]


def test_namespace_opt_in_comes_from_the_namespace_enabled_path_and_false_opts_out() -> None:
    data = pod_review(vllm_pod())
    assert answer(data, CONFIG).outcome == "skipped"
    assert answer(data, CONFIG, namespace_enabled=True).outcome == "injected"
    out = answer(pod_review(vllm_pod({"skewwatch.io/inject": "false"})), CONFIG, namespace_enabled=True)
    assert out.outcome == "skipped" and out.reason == "skewwatch.io/inject: false"
    _unchanged(out)
    assert "warnings" not in out.review["response"]


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "skewwatch", "gpu-infra"])
def test_excluded_namespaces_are_never_injected_whatever_the_pod_asks(namespace: str) -> None:
    config = WebhookConfig(excluded_namespaces=("kube-system", "kube-public", "gpu-infra"))
    a = answer(pod_review(vllm_pod(OPT_IN), namespace=namespace), config, namespace_enabled=True)
    assert a.outcome == "skipped" and "excluded" in a.reason
    _unchanged(a)


def test_injecting_is_idempotent_the_patched_pod_sent_again_gets_no_patch() -> None:
    _, pod = _inject(vllm_pod(OPT_IN))
    again = answer(pod_review(pod), CONFIG, namespace_enabled=True)
    assert again.outcome == "skipped" and again.reason == "the agent is already there"
    _unchanged(again)
    # A pod that carries an agent container of its own (no marker) is left alone too.
    pod["metadata"]["annotations"].pop("skewwatch.io/injected")
    assert answer(pod_review(pod), CONFIG).outcome == "skipped"


def test_dry_run_gets_the_same_answer_and_is_marked_for_the_log() -> None:
    wet = answer(pod_review(vllm_pod(OPT_IN)), CONFIG)
    dry = answer(pod_review(vllm_pod(OPT_IN), dry_run=True), CONFIG)
    assert dry.dry_run and not wet.dry_run and dry.review == wet.review


def test_a_pod_with_no_metadata_annotations_or_volumes_still_gets_a_patch_that_applies() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "containers": [{"name": "tgi", "image": "ghcr.io/huggingface/text-generation-inference:3.0"}]
        }
    }
    a = answer(pod_review(pod), CONFIG, namespace_enabled=True)
    out = patched(pod, a)
    assert out["metadata"]["annotations"]["skewwatch.io/injected"] == "tgi"
    assert "text" in _agent(out)["args"][-1]  # the image's entrypoint, text-generation-launcher
    validate_pod({"apiVersion": "v1", "kind": "Pod", **out, "metadata": {"name": "tgi", **out["metadata"]}})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"operation": "UPDATE"}, "only CREATE"),
        ({"operation": None}, "operation: missing"),
        ({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"}}, "only Pods"),
        ({"subResource": "ephemeralcontainers"}, "subResource"),
        ({"object": None}, "request.object"),
        ({"object": ["not", "a", "pod"]}, "request.object"),
        ({"kind": "Pod"}, "GroupVersionKind"),
    ],
)
def test_reviews_that_are_not_a_pod_create_are_admitted_unchanged_with_a_warning(
    change: dict[str, Any], says: str
) -> None:
    data = pod_review(vllm_pod(OPT_IN))
    data["request"].update(change)
    data["request"] = {k: v for k, v in data["request"].items() if v is not None or k == "object"}
    a = answer(data, CONFIG, namespace_enabled=True)
    _unchanged(a)
    assert a.outcome == "warned" and says in a.review["response"]["warnings"][0]


def test_a_v1beta1_review_is_answered_in_v1beta1_without_a_patch() -> None:
    data = pod_review(vllm_pod(OPT_IN))
    data["apiVersion"] = "admission.k8s.io/v1beta1"
    a = answer(data, CONFIG)
    _unchanged(a)
    assert (
        a.review["apiVersion"] == "admission.k8s.io/v1beta1"
        and "v1beta1" in a.review["response"]["warnings"][0]
    )


def test_a_pod_without_containers_is_admitted_with_a_warning() -> None:
    a = answer(pod_review({"metadata": {"annotations": OPT_IN}, "spec": {}}), CONFIG)
    _unchanged(a)
    assert "spec.containers: missing" in a.review["response"]["warnings"][0]
    a = answer(pod_review({"metadata": {"annotations": OPT_IN}, "spec": {"containers": []}}), CONFIG)
    _unchanged(a)
    assert "the pod has no containers" in a.review["response"]["warnings"][0]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b"{}", "no request object"),
        (b'{"request": {}}', "request.uid"),
        (json.dumps({"request": {"uid": "x" * 500}}).encode(), "request.uid"),
        (b'{"request": {"uid": "u", "object": ' + b"[" * 200 + b"]" * 200 + b"}}", "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ],
)
def test_a_body_that_is_no_admission_review_is_a_typed_error_naming_what_is_wrong(
    body: bytes, says: str
) -> None:
    with pytest.raises(ReviewError, match=says):
        read_review(body)


def test_a_host_pid_pod_is_not_given_a_shared_process_namespace_it_cannot_have() -> None:
    _, pod = _inject(vllm_pod(OPT_IN, hostPID=True))
    assert "shareProcessNamespace" not in pod["spec"]  # the API server refuses both together
    validate_pod(pod)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            lambda p: p["spec"]["containers"][1].update(command="vllm serve"),
            "spec.containers[1].command: expected list",
        ),
        (
            lambda p: p["spec"]["containers"][1]["volumeMounts"][0].pop("name"),
            "volumeMounts[0].name: missing",
        ),
        (
            lambda p: p["spec"]["containers"][0].update(env=[{"name": 3}]),
            "spec.containers[0].env[0].name: expected str",
        ),
        (lambda p: p["spec"].update(hostPID="yes"), "spec.hostPID: expected bool"),
        (lambda p: p["metadata"]["annotations"].update({"x": 1}), "annotations: values must be strings"),
        (lambda p: p["spec"]["volumes"].append("models"), "spec.volumes[2]: expected an object"),
        (
            lambda p: p["spec"].update(securityContext={"runAsUser": True}),
            "spec.securityContext.runAsUser: expected int",
        ),
    ],
)
def test_a_pod_field_without_its_kubernetes_type_is_a_warning_naming_the_field(
    change: Any, says: str
) -> None:
    pod = vllm_pod(OPT_IN)
    change(pod)
    a = answer(pod_review(pod), CONFIG)
    _unchanged(a)
    assert a.outcome == "warned" and says in a.review["response"]["warnings"][0]
