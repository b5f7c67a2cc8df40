"""The webhook's YAML config file: every field read, every bad value a ConfigError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from skewwatch.webhook.config import MAX_CONFIG_BYTES, WebhookConfig, load_config, parse_config
from skewwatch.webhook.errors import ConfigError

FULL = """\
image: registry.local/skewwatch/agent:0.2.0
imagePullPolicy: Always
collector: skewwatch-collector.skewwatch.svc:7070
collectorSecret: agent-credentials
credentialsSecret: agent-tls-and-token
sidecarMode: container
namespace: observability
excludedNamespaces: [kube-system, gpu-operator]
resources:
  requests: {cpu: 20m, memory: 64Mi}
  limits: {memory: 1Gi}
interval: 30
runAsUser: 1000
"""


def test_every_field_of_the_config_file_is_read() -> None:
    c = parse_config(FULL)
    assert c == WebhookConfig(
        image="registry.local/skewwatch/agent:0.2.0",
        image_pull_policy="Always",
        collector="skewwatch-collector.skewwatch.svc:7070",
        collector_secret="agent-credentials",
        credentials_secret="agent-tls-and-token",
        sidecar_mode="container",
        namespace="observability",
        excluded_namespaces=("kube-system", "gpu-operator"),
        resources={"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
        interval_s=30.0,
        run_as_user=1000,
    )
    assert c.excluded("observability") and c.excluded("gpu-operator") and not c.excluded("kube-public")


def test_an_empty_file_and_no_file_are_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == load_config(None) == WebhookConfig()
    assert WebhookConfig().sidecar_mode == "native" and WebhookConfig().excluded("kube-system")


def test_the_credentials_secret_defaults_to_skewwatch_agent_credentials_and_empty_turns_it_off() -> None:
    assert WebhookConfig().credentials_secret == "skewwatch-agent-credentials"
    assert parse_config("credentialsSecret: ''\n").credentials_secret == ""
    assert parse_config("collectorSecret: x\n").credentials_secret == "skewwatch-agent-credentials"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sidecarMode: daemonset\n", "sidecarMode: expected native or container"),
        ("imagePullPolicy: Sometimes\n", "imagePullPolicy: expected Always"),
        ("collectorSecret: Not_A_Name\n", "collectorSecret: 'Not_A_Name' is not a DNS label"),
        ("credentialsSecret: Not_A_Name\n", "credentialsSecret: 'Not_A_Name' is not a DNS label"),
        ("credentialsSecret: 42\n", "credentialsSecret: expected a string"),
        ("credentialsSecret: ~\n", "credentialsSecret: expected a string"),
        ("excludedNamespaces: kube-system\n", "excludedNamespaces: expected a list"),
        (
            "resources: {requests: {cpu: lots}}\n",
            "resources.requests.cpu: 'lots' is not a Kubernetes quantity",
        ),
        ("resources: {wants: {}}\n", "resources.wants: unknown"),
        ("interval: 0\n", "interval: expected seconds"),
        ("runAsUser: 0\n", "runAsUser: expected a non-root uid"),
        ("runAsUser: true\n", "runAsUser: expected a non-root uid"),
        ("image: ''\n", "image: must not be empty"),
        ("sidecar_mode: native\n", "sidecar_mode: unknown field"),
        ("- a list\n", "expected a mapping"),
        ("image: [unclosed\n", "webhook.yaml:2: not valid YAML"),
    ],
)
def test_a_bad_config_file_is_an_error_naming_the_file_and_field(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"^webhook\.yaml") as e:
        parse_config(text, "webhook.yaml")
    assert says in str(e.value)


def test_an_unreadable_huge_or_binary_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"image: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)
