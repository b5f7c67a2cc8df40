"""``skewwatch check --intent FILE MANIFEST…``: the real manifests, each rule, inputs and outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.check.helpers import run
from tests.support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "check"
SARIF_SCHEMA = REPO / "tests" / "fixtures" / "real-world" / "sarif" / "sarif-schema-2.1.0.json"

# Per real manifest: the rules each inference container breaks, against the ModelSpec written
# for it (tests/fixtures/check/<manifest>.yaml). Every one was read off the manifest by hand.
EXPECTED: dict[str, list[set[str]]] = {
    # sglang, local model path, no --dtype / --context-length, 1 GPU with no GPU product selector.
    "aibrix__sglang-deepseek-r1-distill-llama-8b-deployment.yaml": [{"SW003", "SW004", "SW005"}],
    # vLLM on /mnt/models with no --dtype / --max-model-len; no GPU selector though the intent names one.
    "kserve__clusterservingruntime-vllmserver.yaml": [{"SW003", "SW004", "SW005"}],
    # Template and worker: max-model-len comes through VLLM_ADDITIONAL_ARGS; 8 GPUs, no GPU selector.
    "kserve__llminferenceservice-deepseek-r1-dp-ep.yaml": [{"SW003", "SW005"}, {"SW003", "SW005"}],
    # TGI from envFrom only: MODEL_ID is a hub id with no REVISION; no DTYPE or MAX_TOTAL_TOKENS.
    "opea-genaiinfra__tgi-nv.yaml": [{"SW002", "SW003", "SW004", "SW005"}],
    # --max-model-len ${MAX_SEQ_LEN} = 512 in a bash script, the intent says 4096 (SW100).
    "production-stack__vllm-disagg-prefill-deploy.yaml": [{"SW003", "SW005", "SW100"}],
    # meta-llama/Llama-3.2-1B-Instruct with no --revision, no --dtype / --max-model-len, no GPU selector.
    "production-stack__vllm-gpu-deployment.yaml": [{"SW002", "SW003", "SW004", "SW005"}],
}


def run_json(args: list[str], stdin: str = "") -> tuple[int, dict[str, Any]]:
    code, out, err = run([*args, "-o", "json"], stdin)
    assert code in (0, 1), err
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def rules_of(doc: dict[str, Any]) -> list[set[str]]:
    return [{f["rule"] for f in t["findings"]} for t in doc["targets"]]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


INTENT = """\
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata: {name: llama}
spec:
  identity:
    model: {id: meta-llama/Llama-3.1-8B-Instruct, family: llama, task: chat, framework: vllm, precision: bf16}
  runtime:
    accelerator: {vendor: nvidia, type: a100-80gb, count: 2}
    batch: {maxSequenceLengthTokens: 8192}
"""

CLEAN = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: llama, namespace: serving}
spec:
  template:
    spec:
      nodeSelector:
        nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB
      containers:
        - name: vllm
          image: vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          args: [--model, meta-llama/Llama-3.1-8B-Instruct,
                 --revision, 0e9e39f249a16976918f6564b8830bc894c89659,
                 --dtype, bfloat16, --max-model-len, "8192", --tensor-parallel-size, "2"]
          resources:
            limits: {nvidia.com/gpu: "2"}
"""


# --- the real manifests ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_manifest_is_checked_with_its_true_findings(real_fixtures: Path, name: str) -> None:
    manifest = real_fixtures / "manifests" / name
    code, doc = run_json(["--intent", str(FIXTURES / name), str(manifest)])
    assert code == 1
    assert doc["schema"] == "skewwatch.check/v1"
    assert rules_of(doc) == EXPECTED[name]
    lines = manifest.read_text().splitlines()
    for t in doc["targets"]:
        for f in t["findings"]:
            assert 1 <= f["line"] <= len(lines), f
            assert f["file"] == str(manifest)


def test_every_real_manifest_is_covered(real_fixtures: Path) -> None:
    names = {p.name for p in (real_fixtures / "manifests").iterdir()}
    # The Helm template is not YAML (its SOURCES entry says so): it is the bad-input case below.
    assert names - set(EXPECTED) == {"production-stack__helm-template__deployment-vllm-multi.yaml.tpl"}
    assert all((FIXTURES / n).is_file() for n in EXPECTED)


def test_unrendered_helm_template_is_bad_input_with_its_line(real_fixtures: Path) -> None:
    tpl = real_fixtures / "manifests" / "production-stack__helm-template__deployment-vllm-multi.yaml.tpl"
    code, out, err = run(["--intent", str(FIXTURES / "production-stack__vllm-gpu-deployment.yaml"), str(tpl)])
    assert code == 2 and out == ""
    assert err.startswith(f"{tpl}:1: not valid YAML")


def test_max_model_len_inside_a_bash_script_points_at_its_script_line(real_fixtures: Path) -> None:
    name = "production-stack__vllm-disagg-prefill-deploy.yaml"
    manifest = real_fixtures / "manifests" / name
    _, doc = run_json(["--intent", str(FIXTURES / name), str(manifest)])
    [finding] = [f for f in doc["targets"][0]["findings"] if f["rule"] == "SW100"]
    assert finding["key"] == "runtime.max_model_len"
    assert (finding["expected"], finding["actual"]) == (4096, 512)
    assert "--max-model-len ${MAX_SEQ_LEN}" in manifest.read_text().splitlines()[finding["line"] - 1]


def test_tgi_env_from_configmap_token_never_printed(real_fixtures: Path) -> None:
    name = "opea-genaiinfra__tgi-nv.yaml"
    manifest = real_fixtures / "manifests" / name
    for output in ("table", "json", "sarif"):
        code, out, _ = run(["--intent", str(FIXTURES / name), str(manifest), "-o", output])
        assert code == 1
        assert "insert-your-huggingface-token-here" not in out
    _, doc = run_json(["--intent", str(FIXTURES / name), str(manifest)])
    [revision] = [f for f in doc["targets"][0]["findings"] if f["rule"] == "SW002"]
    assert "Intel/neural-chat-7b-v3-3" in revision["message"] and "REVISION" in revision["hint"]


# --- each rule: flags, and does not flag -----------------------------------------------------


def test_clean_manifest_exits_zero(tmp_path: Path) -> None:
    code, out, err = run(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", CLEAN)])
    assert (code, err) == (0, ""), out
    assert out.strip().startswith("0 findings in 1 inference container(s)")


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "vllm/vllm-openai:latest", "SW001"),
        ("vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "registry:5000/vllm/vllm-openai", "SW001"),
        ("--revision, 0e9e39f249a16976918f6564b8830bc894c89659,", "", "SW002"),
        ("--dtype, bfloat16,", "--dtype, auto,", "SW003"),
        ("--dtype, bfloat16,", "", "SW003"),
        ('--max-model-len, "8192",', "", "SW004"),
        ("nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB", "kubernetes.io/os: linux", "SW005"),
        ('nvidia.com/gpu: "2"', 'nvidia.com/gpu: "1"', "SW006"),
        ('--max-model-len, "8192"', '--max-model-len, "32k"', "SW100"),
    ],
)  # fmt: skip
def test_each_rule_flags_what_it_names(tmp_path: Path, old: str, new: str, rule: str) -> None:
    assert old in CLEAN
    manifest = write(tmp_path, "m.yaml", CLEAN.replace(old, new))
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), manifest])
    assert code == 1
    assert rule in rules_of(doc)[0]


def test_image_with_version_tag_or_digest_is_not_mutable(tmp_path: Path) -> None:
    for image in (
        "vllm/vllm-openai:v0.6.3",
        "localhost:5000/vllm/vllm-openai:v1",
        "vllm/vllm-openai:latest@sha256:" + "a" * 64,
    ):
        manifest = CLEAN.replace(
            "vllm/vllm-openai@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", image
        )
        _, doc = run_json(
            ["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", manifest)]
        )
        assert "SW001" not in rules_of(doc)[0], image


def test_required_node_affinity_on_the_gpu_label_constrains_the_class(tmp_path: Path) -> None:
    affinity = """affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: nvidia.com/gpu.product, operator: In, values: [NVIDIA-H100-80GB-HBM3]}"""
    manifest = CLEAN.replace("nodeSelector:\n        nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB", affinity)
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", manifest)])
    findings = doc["targets"][0]["findings"]
    assert code == 1
    assert "SW005" not in {f["rule"] for f in findings}
    # ... and the intent's a100-80gb is contradicted by the H100 the affinity pins.
    [gpu] = [f for f in findings if f["rule"] == "SW100"]
    assert gpu["key"] == "hardware.gpu.product" and gpu["actual"] == "h100-80gb"


def test_skewpolicy_pin_of_tensor_parallel_cannot_fit_the_gpu_limit(tmp_path: Path) -> None:
    policy = (
        INTENT
        + """---
apiVersion: skewwatch.io/v1alpha1
kind: SkewPolicy
metadata: {name: llama-pins}
spec:
  modelSpec: llama
  pins:
    runtime: {tensorParallelSize: 4}
"""
    )
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", policy), write(tmp_path, "m.yaml", CLEAN)])
    findings = {f["rule"]: f for f in doc["targets"][0]["findings"]}
    assert code == 1 and set(findings) == {"SW006", "SW100"}
    assert findings["SW006"]["expected"] == 4 and findings["SW006"]["actual"] == 2
    assert findings["SW100"]["key"] == "runtime.tensor_parallel_size"
    assert "--tensor-parallel-size" in CLEAN.splitlines()[findings["SW100"]["line"] - 1]


def test_secret_key_ref_is_never_printed_and_not_judged(tmp_path: Path) -> None:
    manifest = CLEAN.replace(
        "          resources:",
        "          env:\n            - name: VLLM_API_KEY\n              valueFrom:\n"
        "                secretKeyRef: {name: api, key: token}\n          resources:",
    )
    intent = INTENT + "    environment:\n      variables: {VLLM_API_KEY: sk-abcdefabcdefabcdefabcdef}\n"
    intent = intent.replace("    batch:", "    batch:", 1)
    for output in ("table", "json", "sarif"):
        _, out, _ = run(
            ["--intent", write(tmp_path, "i.yaml", intent), write(tmp_path, "m.yaml", manifest), "-o", output]
        )
        assert "skewwatch-secret-ref" not in out and "sk-abcdef" not in out
    _, doc = run_json(["--intent", write(tmp_path, "i.yaml", intent), write(tmp_path, "m.yaml", manifest)])
    assert all(f["key"] != "runtime.env.VLLM_API_KEY" for f in doc["targets"][0]["findings"])
    checks = {c["field"]: c for c in doc["targets"][0]["checks"]}
    assert checks["spec.runtime.environment.variables.VLLM_API_KEY"]["status"] == "unverifiable"


def test_k8s_var_expansion_in_args(tmp_path: Path) -> None:
    manifest = CLEAN.replace('--max-model-len, "8192"', '--max-model-len, "$(MAX_LEN)"').replace(
        "          resources:",
        '          env:\n            - {name: MAX_LEN, value: "4096"}\n          resources:',
    )
    _, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", manifest)])
    [drift] = [f for f in doc["targets"][0]["findings"] if f["rule"] == "SW100"]
    assert (drift["key"], drift["actual"]) == ("runtime.max_model_len", 4096)


# --- inputs ----------------------------------------------------------------------------------


def test_multi_document_input_finds_the_inference_container_among_others(tmp_path: Path) -> None:
    multi = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: llama}\nspec: {ports: [{port: 80}]}\n---\n" + CLEAN
    )
    multi += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n"
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", multi)])
    assert code == 0 and len(doc["targets"]) == 1
    assert doc["targets"][0]["line"] == multi.splitlines().index("        - name: vllm") + 1


def test_stdin_manifest(tmp_path: Path) -> None:
    code, doc = run_json(
        ["--intent", write(tmp_path, "i.yaml", INTENT), "-"],
        stdin=CLEAN.replace("@sha256:" + "0123456789abcdef" * 4, ":latest"),
    )
    assert code == 1
    [f] = doc["targets"][0]["findings"]
    assert (f["rule"], f["file"], f["line"]) == ("SW001", "-", 11)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path, "m.yaml", CLEAN + "  broken: [unclosed\n")
    code, out, err = run(["--intent", write(tmp_path, "i.yaml", INTENT), bad])
    assert (code, out) == (2, "")
    assert err.startswith(f"{bad}:") and "not valid YAML" in err
    assert int(err.split(":")[1]) >= len(CLEAN.splitlines())


def test_no_inference_container_is_bad_input(tmp_path: Path) -> None:
    plain = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n"
    plain += "      containers: [{name: nginx, image: 'nginx:1.27', args: [nginx, -g, 'daemon off;']}]\n"
    code, _, err = run(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", plain)])
    assert code == 2 and "no inference container found (1 container(s)" in err


def test_bad_intent_and_unreadable_file_are_bad_input(tmp_path: Path) -> None:
    bad_intent = write(tmp_path, "i.yaml", INTENT.replace("family: llama, ", ""))
    code, _, err = run(["--intent", bad_intent, write(tmp_path, "m.yaml", CLEAN)])
    assert code == 2 and err.startswith(
        f"{bad_intent}:6: spec.identity.model: missing required field 'family'"
    )
    missing = str(tmp_path / "nope.yaml")
    code, _, err = run(["--intent", write(tmp_path, "i.yaml", INTENT), missing])
    assert code == 2 and err.startswith(f"{missing}: cannot read: FileNotFoundError")


# --- outputs ---------------------------------------------------------------------------------


def test_sarif_output_is_valid_sarif_2_1_0(real_fixtures: Path) -> None:
    name = "production-stack__vllm-gpu-deployment.yaml"
    manifest = real_fixtures / "manifests" / name
    code, out, _ = run(["--intent", str(FIXTURES / name), str(manifest), "-o", "sarif"])
    assert code == 1
    doc = json.loads(out)
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    [sarif_run] = doc["runs"]
    assert sarif_run["tool"]["driver"]["name"] == "skewwatch"
    rule_ids = [r["id"] for r in sarif_run["tool"]["driver"]["rules"]]
    assert {r["ruleId"] for r in sarif_run["results"]} == {"SW002", "SW003", "SW004", "SW005"}
    for r in sarif_run["results"]:
        assert rule_ids[r["ruleIndex"]] == r["ruleId"]
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == str(manifest) and loc["region"]["startLine"] >= 1


def test_sarif_schema_rejects_a_broken_log() -> None:
    schema = json.loads(SARIF_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert not validator.is_valid({"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]})  # no driver name


def test_table_is_aligned_and_names_location_rule_and_object(tmp_path: Path) -> None:
    manifest = write(tmp_path, "m.yaml", CLEAN.replace("--dtype, bfloat16,", ""))
    code, out, _ = run(["--intent", write(tmp_path, "i.yaml", INTENT), manifest])
    header, row = out.splitlines()[:2]
    assert code == 1 and header.split() == ["LOCATION", "RULE", "SEVERITY", "OBJECT", "MESSAGE"]
    assert row.startswith(f"{manifest}:") and header.index("RULE") == row.index("SW")
    assert "Deployment/llama/vllm" in row


def test_registered_command_runs_from_a_parser() -> None:
    code = (
        "import argparse, sys\n"
        "from skewwatch.check import register\n"
        "p = argparse.ArgumentParser(prog='skewwatch')\n"
        "register(p.add_subparsers(dest='command'))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "sys.exit(a.func(a))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "check", "--intent", str(FIXTURES / "missing.yaml"), "-"],
        capture_output=True, text=True, input="", timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "missing.yaml: cannot read" in proc.stderr


# --- kinds -----------------------------------------------------------------------------------

LWS = """\
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata: {name: llama-mn, namespace: llm}
spec:
  leaderWorkerTemplate:
    size: 2
    leaderTemplate:
      spec:
        nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
        containers:
          - name: leader
            image: vllm/vllm-openai:v0.8.5
            command:
              - sh
              - -c
              - >-
                ray start --head && vllm serve meta-llama/Llama-3.1-8B-Instruct --revision abc123
                --dtype bfloat16 --max-model-len 8192 --tensor-parallel-size 2 --pipeline-parallel-size 2
            resources: {limits: {nvidia.com/gpu: "2"}}
    workerTemplate:
      spec:
        containers:
          - name: worker
            image: vllm/vllm-openai:v0.8.5
            command: [sh, -c, "ray start --address=$(LWS_LEADER_ADDRESS):6379 --block"]
"""


def test_leader_worker_set_checks_the_leader_engine(tmp_path: Path) -> None:
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", LWS)])
    [target] = doc["targets"]  # the worker runs ray, not an engine
    assert (target["object"]["kind"], target["container"], target["role"]) == (
        "LeaderWorkerSet",
        "leader",
        "leader",
    )
    rules = {f["rule"]: f for f in target["findings"]}
    # tp 2 x pp 2 = 4 GPUs do not fit the leader's 2; the intent's a100-80gb is what the selector pins.
    assert code == 1 and "SW006" in rules and "SW005" not in rules
    assert rules["SW006"]["expected"] == 4 and rules["SW006"]["actual"] == 2


ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: llama-isvc}
spec:
  predictor:
    nodeSelector: {nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB}
    model:
      modelFormat: {name: vLLM}
      runtime: kserve-vllmserver
      storageUri: hf://meta-llama/Llama-3.1-8B-Instruct
      args: [--dtype=bfloat16, --max-model-len=4096]
      resources: {limits: {nvidia.com/gpu: "2"}}
"""


def test_inference_service_is_merged_onto_its_serving_runtime(real_fixtures: Path, tmp_path: Path) -> None:
    runtime = real_fixtures / "manifests" / "kserve__clusterservingruntime-vllmserver.yaml"
    isvc = write(tmp_path, "isvc.yaml", ISVC)
    intent = INTENT.replace("meta-llama/Llama-3.1-8B-Instruct", "llama-isvc").replace("count: 2", "count: 2")
    _, doc = run_json(["--intent", write(tmp_path, "i.yaml", intent), str(runtime), isvc])
    merged = [t for t in doc["targets"] if t["object"]["kind"] == "InferenceService"]
    [target] = merged
    assert target["implied_command"] == "merged onto ClusterServingRuntime kserve-vllmserver"
    # {{.Name}} became the InferenceService's name, so the ModelSpec binds by served name.
    assert target["intents"] == {"ModelSpec/llama": "identity.model.id llama-isvc is the served model name"}
    findings = {f["rule"]: f for f in target["findings"]}
    assert set(findings) == {"SW100"}  # 4096 from the predictor's args against the intent's 8192
    assert findings["SW100"]["key"] == "runtime.max_model_len"
    assert (findings["SW100"]["file"], findings["SW100"]["line"]) == (isvc, 11)


def test_max_model_len_auto_is_implicit(tmp_path: Path) -> None:
    manifest = CLEAN.replace('--max-model-len, "8192"', "--max-model-len, auto")
    _, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", manifest)])
    [f] = [f for f in doc["targets"][0]["findings"] if f["rule"] == "SW004"]
    assert "auto" in f["message"] and "--max-model-len" in manifest.splitlines()[f["line"] - 1]


def test_positional_model_of_vllm_serve_points_at_its_word(tmp_path: Path) -> None:
    written = "          args: [--model, meta-llama/Llama-3.1-8B-Instruct,\n                 --revision, "
    plain = CLEAN.replace(
        written + "0e9e39f249a16976918f6564b8830bc894c89659,",
        "          command: [vllm, serve, meta-llama/Llama-3.1-8B-Instruct]\n          args: [",
    )
    _, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", plain)])
    [f] = [f for f in doc["targets"][0]["findings"] if f["rule"] == "SW002"]
    assert "vllm, serve, meta-llama" in plain.splitlines()[f["line"] - 1]


def test_malformed_fields_cost_only_themselves(tmp_path: Path) -> None:
    hostile = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: [x]}
spec:
  template:
    metadata: {labels: oops}
    spec:
      nodeSelector: [1]
      affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [7]}}}
      containers:
        - name: vllm
          image: 42
          command: "not a list"
          args: [vllm, serve, org/m, {a: b}]
          env: [{name: A, valueFrom: {secretKeyRef: nope}}, {name: B, valueFrom: {configMapKeyRef: 3}}, 5]
          envFrom: [{configMapRef: 3}, {secretRef: {name: s}}]
          resources: {limits: 5, requests: {nvidia.com/gpu: lots}}
        - notadict
---
just a string
"""
    code, doc = run_json(["--intent", write(tmp_path, "i.yaml", INTENT), write(tmp_path, "m.yaml", hostile)])
    assert code == 1
    assert {"SW001", "SW002", "SW005"} <= rules_of(doc)[0]
    assert "envFrom Secret s: its variables are unknown" in doc["targets"][0]["notes"]
