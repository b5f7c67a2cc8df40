"""Kubernetes manifests, read with no cluster: every container that could run an inference engine.

``read_manifests(sources)`` loads multi-document YAML (files or stdin) with the collector's
line-keeping loader (:func:`collector.intent.yamldoc.load_documents`), walks the workload kinds
that carry a pod template — Pod, Deployment, StatefulSet, ReplicaSet, DaemonSet, Job, CronJob,
LeaderWorkerSet (leader and worker), KServe ServingRuntime / ClusterServingRuntime,
InferenceService (its predictor, merged onto the ServingRuntime it names when that is in the
input) and LLMInferenceService (template and worker) — and returns one :class:`ContainerView`
per container, with the command line the kubelet would start (``command`` or the image's
entrypoint, then ``args``, ``$(VAR)`` expanded), its environment (``env`` literals, ConfigMaps of
the same input through ``envFrom`` / ``configMapKeyRef``; a ``secretKeyRef`` becomes a marker the
check's redaction always hides), and the 1-based line of every field a finding may point at.

Which container is the inference one is decided by the caller with the agent's engine tables;
this module only reads. Where a workload has no command, the image's well-known entrypoint
(:data:`IMAGE_ENTRYPOINTS`) or KServe's LLMInferenceService preset stands in, marked as implied.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.k8s import GPU_PRODUCT_LABELS
from collector.errors import IntentError
from collector.intent.yamldoc import Document, load_documents
from skewwatch.check.errors import CheckInputError
from skewwatch.core.containers import IMAGE_ENTRYPOINTS, k8s_expand

# What a ``secretKeyRef`` variable holds in the check: its value is unknown (no cluster) and must
# never be shown; the check's redaction digests any value that contains this marker.
SECRET_MARKER = "skewwatch-secret-ref:"  # noqa: S105  (a marker, not a credential)

# Where each kind keeps its pod specs: (path to the pod spec, path to the pod metadata, role).
POD_SPECS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...]] = {
    "Pod": ((("spec",), ("metadata",), ""),),
    "Deployment": ((("spec", "template", "spec"), ("spec", "template", "metadata"), ""),),
    "StatefulSet": ((("spec", "template", "spec"), ("spec", "template", "metadata"), ""),),
    "ReplicaSet": ((("spec", "template", "spec"), ("spec", "template", "metadata"), ""),),
    "DaemonSet": ((("spec", "template", "spec"), ("spec", "template", "metadata"), ""),),
    "Job": ((("spec", "template", "spec"), ("spec", "template", "metadata"), ""),),
    "CronJob": (
        (
            ("spec", "jobTemplate", "spec", "template", "spec"),
            ("spec", "jobTemplate", "spec", "template", "metadata"),
            "",
        ),
    ),
    "LeaderWorkerSet": (
        (
            ("spec", "leaderWorkerTemplate", "leaderTemplate", "spec"),
            ("spec", "leaderWorkerTemplate", "leaderTemplate", "metadata"),
            "leader",
        ),
        (
            ("spec", "leaderWorkerTemplate", "workerTemplate", "spec"),
            ("spec", "leaderWorkerTemplate", "workerTemplate", "metadata"),
            "worker",
        ),
    ),
    "ServingRuntime": ((("spec",), ("spec",), ""),),
    "ClusterServingRuntime": ((("spec",), ("spec",), ""),),
    "InferenceService": ((("spec", "predictor"), ("metadata",), "predictor"),),
    "LLMInferenceService": (
        (("spec", "template"), ("metadata",), "template"),
        (("spec", "worker"), ("metadata",), "worker"),
    ),
}
RUNTIME_KINDS = frozenset({"ServingRuntime", "ClusterServingRuntime"})
LLMISVC_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts spec.model.uri

_KSERVE_PLACEHOLDER = re.compile(r"\{\{\s*\.Name\s*\}\}")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ObjectRef:
    """A manifest object: where it is and what it is called."""

    file: str
    line: int
    kind: str
    name: str
    namespace: str

    @property
    def workload(self) -> str:
        return f"{self.namespace or 'default'}/{self.kind}/{self.name}"


@dataclass
class Arg:
    """One command-line word and the manifest line it comes from."""

    text: str
    line: int
    block: bool = False  # a block scalar (``|``): its lines follow ``line`` one for one


@dataclass
class ContainerView:
    """One container as the kubelet would start it, with the lines of its fields."""

    obj: ObjectRef
    role: str  # "" | leader | worker | predictor | template
    name: str
    line: int
    image: str
    image_line: int
    argv: list[Arg]
    env: dict[str, str]
    env_lines: dict[str, int]
    secret_env: set[str]
    resources: dict[str, dict[str, str]]  # requests|limits -> resource -> quantity
    resources_line: int
    gpu_selector: tuple[str, tuple[str, ...], int] | None  # label, values, line
    placement_line: int  # where a node selector would go (the pod spec)
    labels: dict[str, str]
    annotations: dict[str, str]
    implied: str = ""  # why the command line is implied rather than written
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        role = f" ({self.role})" if self.role else ""
        return f"{self.obj.kind}/{self.obj.name}{role} container {self.name}"

    def words(self) -> list[str]:
        return [a.text for a in self.argv]


@dataclass
class _Input:
    docs: list[Document]
    text_lines: dict[str, list[str]]
    configmaps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    runtimes: dict[str, Document] = field(default_factory=dict)


def load(text: str, file: str) -> list[Document]:
    """Every document of one manifest file; CheckInputError ``FILE:LINE: message`` when it is not YAML."""
    try:
        return load_documents(text, file)
    except IntentError as e:
        first = e.issues[0]
        message = first.message.replace("intent documents", "manifests")
        raise CheckInputError(first.file, first.line, message) from e


def read_manifests(sources: Sequence[tuple[str, str]]) -> list[ContainerView]:
    """Every container of every workload in ``sources`` (file name, text), in input order."""
    inp = _Input([], {})
    for file, text in sources:
        inp.text_lines[file] = text.splitlines()
        for doc in load(text, file):
            for sub in _objects(doc):
                inp.docs.append(sub)
    for doc in inp.docs:
        data = doc.data
        kind = data.get("kind")
        meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        if kind == "ConfigMap":
            cm = data.get("data") if isinstance(data.get("data"), dict) else {}
            inp.configmaps[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = {
                str(k): str(v) for k, v in cm.items()
            }
        elif kind in RUNTIME_KINDS:
            inp.runtimes[str(meta.get("name") or "")] = doc
    views: list[ContainerView] = []
    for doc in inp.docs:
        views.extend(_views(doc, inp))
    return views


def _objects(doc: Document) -> Iterator[Document]:
    """The document, or each item of a ``kind: List`` (``kubectl get -o yaml``) as its own."""
    data = doc.data
    if not isinstance(data, dict):
        return
    if data.get("kind") == "List" and isinstance(data.get("items"), list):
        for i, item in enumerate(data["items"]):
            if isinstance(item, dict):
                prefix: Path = ("items", i)
                lines = {p[2:]: n for p, n in doc.lines.items() if p[:2] == prefix}
                yield Document(item, doc.file, lines, doc.line(prefix))
        return
    yield doc


def _get(data: Any, path: Sequence[str | int]) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _views(doc: Document, inp: _Input) -> Iterator[ContainerView]:
    data = doc.data
    kind = str(data.get("kind") or "")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    obj = ObjectRef(
        doc.file, doc.start_line, kind, str(meta.get("name") or ""), str(meta.get("namespace") or "")
    )
    for spec_path, meta_path, role in POD_SPECS.get(kind, ()):
        pod = _get(data, spec_path)
        if not isinstance(pod, dict):
            continue
        pod_meta = _get(data, meta_path) if meta_path != ("spec",) else {}
        labels = _str_map(_get(pod_meta, ("labels",)))
        annotations = _str_map(_get(pod_meta, ("annotations",)))
        ctx = _PodContext(doc, inp, obj, role, spec_path, pod, labels, annotations)
        if kind == "InferenceService":
            yield from ctx.inference_service()
            continue
        for i, c in enumerate(pod.get("containers") or []):
            if isinstance(c, dict):
                yield ctx.container(c, (*spec_path, "containers", i))


@dataclass
class _PodContext:
    doc: Document
    inp: _Input
    obj: ObjectRef
    role: str
    spec_path: Path
    pod: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]

    def line(self, path: Path) -> int:
        return self.doc.line(path)

    def container(
        self,
        c: dict[str, Any],
        path: Path,
        runtime: tuple[Document, dict[str, Any], Path] | None = None,
    ) -> ContainerView:
        """A container as started; ``runtime`` (document, container, path): a KServe predictor's
        ServingRuntime container it is merged onto (the runtime gives command, args and env
        first; the predictor's args follow, its env and resources win)."""
        env, env_lines, secret, notes = self._env(c, path)
        image, image_line = str(c.get("image") or ""), self.line((*path, "image"))
        argv: list[Arg] = []
        implied = ""
        if runtime is not None:
            rdoc, rc, rpath = runtime
            renv, rlines, rsecret, rnotes = _PodContext(rdoc, self.inp, self.obj, "", rpath, {}, {}, {})._env(
                rc, rpath
            )
            env, env_lines = {**renv, **env}, {**rlines, **env_lines}
            secret |= rsecret - set(env)
            notes = rnotes + notes
            argv = self._words(rdoc, rc, rpath, env)
            if not image:
                image, image_line = str(rc.get("image") or ""), rdoc.line((*rpath, "image"))
            implied = f"merged onto {rdoc.data.get('kind')} {_get(rdoc.data, ('metadata', 'name'))}"
        argv += self._words(self.doc, c, path, env, command=runtime is None)
        if not c.get("command") and runtime is None:
            implied, argv = self._implied(image, image_line, path, argv)
        resources = {
            part: _str_map(_get(c, ("resources", part)))
            for part in ("requests", "limits")
            if isinstance(_get(c, ("resources", part)), dict)
        }
        if runtime is not None and not resources:
            rc = runtime[1]
            resources = {
                part: _str_map(_get(rc, ("resources", part)))
                for part in ("requests", "limits")
                if isinstance(_get(rc, ("resources", part)), dict)
            }
        return ContainerView(
            obj=self.obj,
            role=self.role,
            name=str(c.get("name") or ""),
            line=self.line(path),
            image=image,
            image_line=image_line,
            argv=argv,
            env=env,
            env_lines=env_lines,
            secret_env=secret,
            resources=resources,
            resources_line=self.line((*path, "resources")),
            gpu_selector=self._gpu_selector(),
            placement_line=self.line(self.spec_path),
            labels=self.labels,
            annotations=self.annotations,
            implied=implied,
            notes=notes,
        )

    def _words(
        self, doc: Document, c: dict[str, Any], path: Path, env: Mapping[str, str], command: bool = True
    ) -> list[Arg]:
        words: list[Arg] = []
        # KServe fills {{.Name}} with the InferenceService's name: known only when one is merged.
        isvc = (
            str(_get(self.doc.data, ("metadata", "name")) or "")
            if self.obj.kind == "InferenceService"
            else ""
        )
        for part in ("command", "args") if command else ("args",):
            items = c.get(part)
            if not isinstance(items, list):
                continue
            for i, item in enumerate(items):
                line = doc.line((*path, part, i))
                text = k8s_expand(str(item), env)
                text = _KSERVE_PLACEHOLDER.sub(isvc, text) if isvc else text
                words.append(Arg(text, line, self._is_block(doc.file, line)))
        return words

    def _is_block(self, file: str, line: int) -> bool:
        lines = self.inp.text_lines.get(file, [])
        return 0 < line <= len(lines) and bool(re.search(r"[|>][-+0-9]*\s*(#.*)?$", lines[line - 1]))

    def _implied(self, image: str, image_line: int, path: Path, argv: list[Arg]) -> tuple[str, list[Arg]]:
        """The command of a container that has none: KServe's LLMInferenceService preset, else
        the image's entrypoint."""
        if self.obj.kind == "LLMInferenceService":
            return "the KServe LLMInferenceService preset runs vllm serve", self._llmisvc_argv(path) + argv
        repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        entry = IMAGE_ENTRYPOINTS.get(repo)
        if entry is None:
            return "", argv
        return f"the entrypoint of image {repo}", [Arg(w, image_line) for w in entry] + argv

    def _llmisvc_argv(self, path: Path) -> list[Arg]:
        data = self.doc.data
        model_line = self.line(("spec", "model"))
        out = [Arg("vllm", model_line), Arg("serve", model_line), Arg(LLMISVC_MODEL_DIR, model_line)]
        name = _get(data, ("spec", "model", "name"))
        if name:
            line = self.line(("spec", "model", "name"))
            out += [Arg("--served-model-name", line), Arg(str(name), line)]
        for field_name, flag in (
            ("tensor", "--tensor-parallel-size"),
            ("pipeline", "--pipeline-parallel-size"),
            ("data", "--data-parallel-size"),
        ):
            value = _get(data, ("spec", "parallelism", field_name))
            if isinstance(value, int) and not isinstance(value, bool):
                line = self.line(("spec", "parallelism", field_name))
                out += [Arg(flag, line), Arg(str(value), line)]
        return out

    def _env(
        self, c: dict[str, Any], path: Path
    ) -> tuple[dict[str, str], dict[str, int], set[str], list[str]]:
        env: dict[str, str] = {}
        lines: dict[str, int] = {}
        secret: set[str] = set()
        notes: list[str] = []
        ns = self.obj.namespace
        for i, ref in enumerate(c.get("envFrom") or []):
            if not isinstance(ref, dict):
                continue
            line = self.line((*path, "envFrom", i))
            prefix = str(ref.get("prefix") or "")
            cm_name = _get(ref, ("configMapRef", "name"))
            if cm_name is not None:
                cm = self.inp.configmaps.get((ns, str(cm_name))) or self.inp.configmaps.get(
                    ("", str(cm_name))
                )
                if cm is None:
                    notes.append(
                        f"envFrom ConfigMap {cm_name} is not in the input: its variables are unknown"
                    )
                    continue
                for k, v in cm.items():
                    env[prefix + k], lines[prefix + k] = v, line
            elif _get(ref, ("secretRef", "name")) is not None:
                notes.append(f"envFrom Secret {_get(ref, ('secretRef', 'name'))}: its variables are unknown")
        for i, item in enumerate(c.get("env") or []):
            if not isinstance(item, dict) or not item.get("name"):
                continue
            name = str(item["name"])
            line = self.line((*path, "env", i))
            value_from: dict[str, Any] = item["valueFrom"] if isinstance(item.get("valueFrom"), dict) else {}
            if "value" in item:
                env[name] = k8s_expand(str(item["value"]) if item["value"] is not None else "", env)
                secret.discard(name)
            elif "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"] if isinstance(value_from["secretKeyRef"], dict) else {}
                env[name] = f"{SECRET_MARKER}{ref.get('name', '')}/{ref.get('key', '')}"
                secret.add(name)
            elif "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"] if isinstance(value_from["configMapKeyRef"], dict) else {}
                cm = self.inp.configmaps.get((ns, str(ref.get("name")))) or self.inp.configmaps.get(
                    ("", str(ref.get("name")))
                )
                if cm is None or str(ref.get("key")) not in cm:
                    notes.append(
                        f"env {name}: ConfigMap {ref.get('name')} key {ref.get('key')} not in the input"
                    )
                    continue
                env[name] = cm[str(ref.get("key"))]
            else:
                continue  # fieldRef / resourceFieldRef: known only in the running pod
            lines[name] = line
        return env, lines, secret, notes

    def _gpu_selector(self) -> tuple[str, tuple[str, ...], int] | None:
        selector = self.pod.get("nodeSelector")
        if isinstance(selector, dict):
            for label in GPU_PRODUCT_LABELS:
                if selector.get(label):
                    return label, (str(selector[label]),), self.line((*self.spec_path, "nodeSelector", label))
        terms_path = (
            *self.spec_path,
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        )
        terms = _get(self.pod, terms_path[len(self.spec_path) :])
        if not isinstance(terms, list) or not terms:
            return None
        found: list[tuple[str, tuple[str, ...], int]] = []
        for t, term in enumerate(terms):
            hit = None
            for e, expr in enumerate(_get(term, ("matchExpressions",)) or []):
                if (
                    isinstance(expr, dict)
                    and expr.get("key") in GPU_PRODUCT_LABELS
                    and expr.get("operator") == "In"
                    and expr.get("values")
                ):
                    line = self.line((*terms_path, t, "matchExpressions", e))
                    hit = (str(expr["key"]), tuple(str(v) for v in expr["values"]), line)
                    break
            if hit is None:
                return None  # terms are ORed: one without a GPU constraint lets any node in
            found.append(hit)
        values = tuple(dict.fromkeys(v for _, vs, _ in found for v in vs))
        return found[0][0], values, found[0][2]

    def inference_service(self) -> Iterator[ContainerView]:
        """A KServe predictor: its containers, or its ``model`` merged onto its ServingRuntime."""
        for i, c in enumerate(self.pod.get("containers") or []):
            if isinstance(c, dict):
                yield self.container(c, (*self.spec_path, "containers", i))
        model = self.pod.get("model")
        if not isinstance(model, dict):
            return
        path = (*self.spec_path, "model")
        runtime_doc = self._runtime_for(model)
        if runtime_doc is None:
            view = self.container({"name": "kserve-container", **model}, path)
            view.notes.append(
                f"ServingRuntime {model.get('runtime') or _get(model, ('modelFormat', 'name'))} "
                "is not in the input: only the predictor's own args are known"
            )
            yield view
            return
        rcs = _get(runtime_doc.data, ("spec", "containers")) or []
        for j, rc in enumerate(rcs):
            if isinstance(rc, dict) and (rc.get("name") == "kserve-container" or j == 0):
                merged = {"name": rc.get("name") or "kserve-container", **model}
                yield self.container(merged, path, (runtime_doc, rc, ("spec", "containers", j)))
                return

    def _runtime_for(self, model: Mapping[str, Any]) -> Document | None:
        name = model.get("runtime")
        if name:
            return self.inp.runtimes.get(str(name))
        fmt = str(_get(model, ("modelFormat", "name")) or "").lower()
        for doc in self.inp.runtimes.values():
            formats = _get(doc.data, ("spec", "supportedModelFormats")) or []
            if any(isinstance(f, dict) and str(f.get("name", "")).lower() == fmt for f in formats):
                return doc
        return None
