"""deploy/ as it runs: the collector started with the self-signed overlay's rendered command line
and Secrets (the files the kubelet would mount), an agent with the sidecar the injector builds
from deploy/base/injector-config.yaml and the Secrets deploy/overlays/agent-namespace renders, a
stand-in vLLM for it to watch. The pod's facts reach the collector over TLS with the namespace's
token; an agent with any other token is refused and counted; the API answers only with a token."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.harness import Processes, free_port, skewwatch, wait_for
from demo.standin_vllm import install_launcher
from skewwatch.core.containers import k8s_expand
from skewwatch.webhook.config import parse_config
from skewwatch.webhook.inject import CREDENTIALS_PATH, agent_container, find_inference_container
from tests.deploy.kustomize import DEPLOY, Obj, one, render

pytestmark = pytest.mark.e2e

NAMESPACE, POD = "llm", "vllm-7d9f8b6c5-abcde"
SERVICE_NAME = "skewwatch-collector.skewwatch.svc"  # what the certificate names; we dial 127.0.0.1


def http_get(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


class Install:
    """The rendered manifests and their Secrets, as files under ``root``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        deploy = tmp / "deploy"
        shutil.copytree(DEPLOY, deploy, ignore=shutil.ignore_patterns("tls", "credentials"))
        script = deploy / "scripts" / "bootstrap-tls.sh"
        subprocess.run(["bash", str(script)], check=True, capture_output=True, timeout=60)
        self.agent_token, self.read_token = secrets.token_hex(32), secrets.token_hex(32)
        credentials = deploy / "overlays" / "agent-namespace" / "credentials"
        credentials.mkdir()
        shutil.copy(deploy / "overlays" / "self-signed" / "tls" / "ca.crt", credentials / "ca.crt")
        (credentials / "token").write_text(self.agent_token + "\n")
        self.system = render(deploy / "overlays" / "self-signed")
        self.namespace = render(deploy / "overlays" / "agent-namespace")
        # The two Secrets the operator creates (deploy/README.md, "Credentials").
        self.secrets: dict[str, dict[str, bytes]] = {
            "skewwatch-agent-tokens": {NAMESPACE: self.agent_token.encode() + b"\n"},
            "skewwatch-api-tokens": {"read.me": self.read_token.encode() + b"\n"},
        }
        for objs in (self.system, self.namespace):
            for s in (o for o in objs if o["kind"] == "Secret"):
                data = {k: base64.b64decode(v) for k, v in s.get("data", {}).items()}
                data |= {k: v.encode() for k, v in s.get("stringData", {}).items()}
                self.secrets[s["metadata"]["name"]] = data
        self.root = tmp / "root"

    def mount(self, pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Path]:
        """Each Secret volume of ``container`` written under root at its mountPath, as the kubelet
        does; an emptyDir made empty. mountPath → the directory."""
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        out: dict[str, Path] = {}
        for m in container.get("volumeMounts", []):
            volume = volumes.get(m["name"], {})
            where = self.root / m["mountPath"].lstrip("/")
            if "secret" in volume:
                kubelet_write(where, self.secrets[volume["secret"]["secretName"]])
            elif "emptyDir" in volume:
                where.mkdir(parents=True, exist_ok=True)
            else:
                continue
            out[m["mountPath"]] = where
        return out

    def moved(self, value: str, mounts: dict[str, Path]) -> str:
        """``value`` with a path under one of ``mounts`` moved to where that mount was made."""
        for path, where in mounts.items():
            if value == path or value.startswith(path.rstrip("/") + "/"):
                return str(where) + value[len(path) :]
        return value


def kubelet_write(where: Path, data: dict[str, bytes]) -> None:
    """A Secret volume the way the kubelet's atomic writer lays it out and updates it: the files
    in a fresh ``..<timestamp>`` directory, the ``..data`` link swapped to it in one rename, each
    key a link through ``..data``, the previous directory removed."""
    where.mkdir(parents=True, exist_ok=True)
    fresh = where / f"..{secrets.token_hex(6)}"
    fresh.mkdir()
    for key, value in data.items():
        (fresh / key).write_bytes(value)
    old = (where / "..data").resolve() if (where / "..data").is_symlink() else None
    (where / "..data_tmp").symlink_to(fresh.name)
    os.replace(where / "..data_tmp", where / "..data")
    for entry in where.iterdir():
        if not entry.name.startswith("..") and entry.name not in data:
            entry.unlink()
    for key in data:
        if not (where / key).is_symlink():
            (where / key).symlink_to(f"..data/{key}")
    if old is not None:
        shutil.rmtree(old)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def test_the_rendered_install_streams_over_tls_with_the_namespaces_token(
    tmp_path: Path, procs: Processes
) -> None:
    install = Install(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    env["PYTHONUNBUFFERED"] = "1"

    # The collector: the Deployment's args, with its Secrets mounted, on loopback ports.
    deployment = one(install.system, "Deployment", "skewwatch-collector")
    pod_spec = deployment["spec"]["template"]["spec"]
    c = pod_spec["containers"][0]
    mounts = install.mount(pod_spec, c)
    grpc_port, http_port = free_port(), free_port()
    args = [install.moved(a, mounts) for a in c["args"]]
    args = [{"0.0.0.0:50051": f"127.0.0.1:{grpc_port}", "0.0.0.0:8080": f"127.0.0.1:{http_port}"}.get(a, a)
            for a in args]  # fmt: skip
    args = [f"sqlite:///{tmp_path}/store.db" if a.startswith("sqlite:") else a for a in args]
    assert "--insecure" not in args
    procs.start("collector", [*skewwatch(*args)], env)
    api = f"http://127.0.0.1:{http_port}"
    wait_for("collector ready", lambda: http_get(f"{api}/readyz")[0] == 200, procs)
    assert http_get(f"{api}/api/v1/pods")[0] == 401  # the API wants a token

    # The engine the sidecar watches.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"})
    )
    vllm, vllm_port = install_launcher(tmp_path / "bin"), free_port()
    procs.start("vllm", [str(vllm), "serve", str(model), "--port", str(vllm_port)], env)

    # The sidecar the injector builds with deploy/'s config, for a vLLM pod of namespace llm.
    injector = one(install.system, "Deployment", "skewwatch-injector")["spec"]["template"]["spec"]
    config_map = next(v["configMap"]["name"] for v in injector["volumes"] if v["name"] == "config")
    config = parse_config(one(install.system, "ConfigMap", config_map)["data"]["config.yaml"])
    pod: Obj = {
        "metadata": {"name": POD, "namespace": NAMESPACE, "annotations": {"skewwatch.io/inject": "true"}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.8.0",
                                 "command": ["vllm", "serve", str(model)]}]},
    }  # fmt: skip
    plan = agent_container(pod, find_inference_container(pod), config)
    agent = plan.agent
    agent_mounts = install.mount({"volumes": plan.volumes}, agent)
    assert CREDENTIALS_PATH in agent_mounts

    def agent_env(token_dir: Path | None = None) -> dict[str, str]:
        out = dict(env, POD_NAME=POD, POD_NAMESPACE=NAMESPACE, POD_UID="0000-1111", NODE_NAME="node-1")
        out.update({e["name"]: e["value"] for e in agent["env"] if "value" in e})
        for ref in agent["envFrom"]:
            out.update({k: v.decode() for k, v in install.secrets[ref["secretRef"]["name"]].items()})
        out = {k: install.moved(v, agent_mounts) for k, v in out.items()}
        # In the cluster the agent dials the Service by the name its certificate carries.
        out["SKEWWATCH_COLLECTOR"] = f"127.0.0.1:{grpc_port}"
        out["SKEWWATCH_TLS_SERVER_NAME"] = SERVICE_NAME
        if token_dir is not None:
            out["SKEWWATCH_TOKEN_FILE"] = str(token_dir / "token")
        return out

    first = agent_env()
    assert first["SKEWWATCH_TLS_CA"].startswith(str(install.root)) and "SKEWWATCH_INSECURE" not in first
    assert install.agent_token not in first.values()
    argv = [*agent["command"][1:], *(k8s_expand(a, first) for a in agent["args"])]
    argv[argv.index("--interval") + 1] = "0.5"
    procs.start("agent", skewwatch(*argv), first)

    def seen(name: str) -> bool:
        status, body = http_get(f"{api}/api/v1/pods/{NAMESPACE}/{name}", install.read_token)
        return status == 200 and body["facts"].get("runtime.engine") == "vllm"

    wait_for("the pod's facts at the collector", lambda: seen(POD), procs, timeout_s=90)
    log = (tmp_path / "agent.log").read_text(errors="replace")
    assert (
        install.agent_token not in log and install.agent_token not in (tmp_path / "collector.log").read_text()
    )

    # Another token (a stale one) for the same namespace: refused, and counted.
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "token").write_text(secrets.token_hex(32))
    second = agent_env(stale)
    second["POD_NAME"] = POD + "-2"
    procs.start("agent-stale", skewwatch(*argv), second)

    wait_for("the stale token refused", lambda: refusals(api) >= 1, procs, timeout_s=60)
    assert http_get(f"{api}/api/v1/pods/{NAMESPACE}/{POD}-2", install.read_token)[0] == 404
    procs.stop("agent-stale")

    # Rotation as deploy/README.md says, no restart: a new token beside the old one in the
    # replaced Secret, an agent with it is let in; then the old one removed, and refused.
    tokens = next(m for p, m in mounts.items() if p.endswith("/agent-tokens"))
    new = secrets.token_hex(32)
    install.secrets["skewwatch-agent-tokens"][f"{NAMESPACE}.2"] = new.encode()
    kubelet_write(tokens, install.secrets["skewwatch-agent-tokens"])
    (stale / "token").write_text(new)
    third = agent_env(stale)
    third["POD_NAME"] = POD + "-3"
    procs.start("agent-rotated", skewwatch(*argv), third)

    wait_for("the agent with the new token", lambda: seen(POD + "-3"), procs, timeout_s=60)
    before = refusals(api)
    del install.secrets["skewwatch-agent-tokens"][NAMESPACE]
    kubelet_write(tokens, install.secrets["skewwatch-agent-tokens"])
    # The collector re-reads the tokens at most every second, at an agent's next message: the
    # first agent, still streaming with the old token, is refused once it has (its stream ends).
    wait_for("the old token's stream refused", lambda: refusals(api) > before, procs, timeout_s=60)
    fourth = agent_env()  # the old token, still in this namespace's credentials
    fourth["POD_NAME"] = POD + "-4"
    procs.start("agent-old", skewwatch(*argv), fourth)
    old_log = tmp_path / "agent-old.log"
    wait_for(
        "a new agent with the old token refused",
        lambda: old_log.exists() and "UNAUTHENTICATED" in old_log.read_text(errors="replace"),
        procs,
        timeout_s=60,
    )
    assert http_get(f"{api}/api/v1/pods/{NAMESPACE}/{POD}-4", install.read_token)[0] == 404


def refusals(api: str) -> float:
    """skewwatch_auth_refused_total of the gRPC surface, summed over reasons, from /metrics."""
    with urllib.request.urlopen(f"{api}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = r'^skewwatch_auth_refused_total\{[^}]*surface="grpc"[^}]*\} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))
