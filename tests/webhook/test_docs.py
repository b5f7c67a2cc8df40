"""docs/webhook.md says what the code does: its config example is the defaults, its
MutatingWebhookConfiguration is valid Kubernetes, and every annotation it lists is one the
webhook reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from skewwatch.webhook import inject
from skewwatch.webhook.config import WebhookConfig, parse_config
from tests.webhook.support import validate_k8s

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhook.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_documented_config_file_is_the_defaults() -> None:
    (config,) = [b for b in _yaml_blocks() if b.startswith("image:")]
    assert parse_config(config, "docs/webhook.md") == WebhookConfig()


def test_the_documented_webhook_configuration_is_valid_and_calls_both_paths() -> None:
    (block,) = [b for b in _yaml_blocks() if "MutatingWebhookConfiguration" in b]
    doc = yaml.safe_load(block)
    validate_k8s(doc)
    paths = {w["clientConfig"]["service"]["path"] for w in doc["webhooks"]}
    assert paths == {"/mutate", "/mutate/namespace-enabled"}


def test_every_annotation_the_webhook_reads_is_documented_and_no_other() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"`(skewwatch\.io/[a-z-]+)", text))
    documented |= {
        f"skewwatch.io/{m}" for m in re.findall(r"`(memory-request|cpu-limit|memory-limit)`", text)
    }
    read = {
        v
        for name, v in vars(inject).items()
        if name.isupper() and isinstance(v, str) and v.startswith(inject.PREFIX) and v != inject.PREFIX
    }
    read |= set(inject.RESOURCES)
    assert documented == read
