"""A manifest container's configuration as the agent would report it: facts with provenance.

The command line and environment go through the very parse the agent's process source runs
(:func:`agent.sources.process.locate` and :func:`agent.sources.process.parse_args`, with the
agent's redaction), so a flag means here what it means in a running pod. What the pod source
would read from the Pod object (image and digest, resources, the GPU class a node selector
pins, labels, annotations) is added from the manifest. The result is a
:class:`collector.domain.model.Replica`, the input of the collector's drift engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.engines import EngineSpec, Invocation, ParsedCommand, Redact, Setting, redact_with
from agent.k8s import image_digest
from agent.sources.process import locate, parse_args
from collector.domain.model import Replica
from skewwatch.check.manifests import SECRET_MARKER, ContainerView
from skewwatch.core.errors import FactError
from skewwatch.core.facts import FactValue, Provenance, SourceState, SourceStatus, validate_key
from skewwatch.core.gpu import gpu_class_name
from skewwatch.redact import Redactor

_DIGEST_REF = re.compile(r"@(sha256:[0-9a-f]{64})$")
_FLAG_IN_DETAIL = re.compile(r"^(--?[A-Za-z0-9][A-Za-z0-9_.-]*)")
_Add = Callable[[str, FactValue, str, str, str], None]
_VIA_ENV = re.compile(r"\(?(?:via )?\$([A-Za-z_][A-Za-z0-9_]*)\)?")


@dataclass
class Derived:
    """One inference container: which engine, what it configures, and the replica to evaluate."""

    view: ContainerView
    invocation: Invocation
    parsed: ParsedCommand
    replica: Replica
    settings: dict[str, Setting] = field(default_factory=dict)  # canonical key -> its setting
    problems: list[str] = field(default_factory=list)

    @property
    def spec(self) -> EngineSpec:
        return self.invocation.spec

    def value(self, key: str) -> FactValue:
        return self.replica.facts.get(key)

    def line_of(self, key: str) -> int:
        """The manifest line that gave ``key`` its value, else the container's."""
        setting = self.settings.get(key)
        if setting is None:
            prov = self.replica.provenance.get(key)
            return self.view.line if prov is None else self.line_of_detail(prov.detail)
        return self.line_of_detail(setting.detail)

    def raw(self, key: str) -> Setting | None:
        """The ``runtime.args.<flag>`` setting of a flag that feeds ``key``, as written (for a
        value the table's type refused, such as ``--max-model-len auto``)."""
        flags = {f for s in self.spec.settings if s.key == key for f in s.flags}
        for s in reversed(self.parsed.settings):
            if s.key.startswith("runtime.args.") and s.detail.split(" ", 1)[0] in flags:
                return s
        return None

    def line_of_detail(self, detail: str) -> int:
        """The line of a provenance detail: a flag (``--dtype``), a variable (``DTYPE``, ``--x (via $V)``),
        the positional model of ``vllm serve MODEL``."""
        view = self.view
        if detail.startswith("positional argument") and self.parsed.model_arg:
            for arg in view.argv:
                if arg.text == self.parsed.model_arg:
                    return arg.line
        via = _VIA_ENV.search(detail)
        if via is not None and via.group(1) in view.env_lines:
            return view.env_lines[via.group(1)]
        flag = _FLAG_IN_DETAIL.match(detail)
        if flag is not None:
            line = _flag_line(view, flag.group(1))
            if line is not None:
                return line
        if detail in view.env_lines:
            return view.env_lines[detail]
        return view.line


def _flag_line(view: ContainerView, flag: str) -> int | None:
    """Where ``flag`` is written: its own word, or its line inside a ``bash -c`` block script."""
    pattern = re.compile(rf"(^|\s){re.escape(flag)}(=|\s|$)")
    for arg in view.argv:
        if arg.text == flag or arg.text.startswith(flag + "="):
            return arg.line
        if "\n" in arg.text or " " in arg.text:
            for i, text in enumerate(arg.text.splitlines()):
                if pattern.search(text):
                    return arg.line + 1 + i if arg.block else arg.line
    return None


def _templated(value: FactValue) -> bool:
    """A value a controller fills at deploy time (KServe's ``{{.Name}}``): unknown before it."""
    return isinstance(value, str) and "{{" in value and "}}" in value


def _redact(redactor: Redactor, secret_names: set[str]) -> Redact:
    base = redact_with(redactor)

    def redact(name: str, value: str) -> str:
        if name in secret_names or SECRET_MARKER in value:
            return redactor.digest(value)
        return base(name, value)

    return redact


def derive(view: ContainerView, redactor: Redactor) -> Derived | None:
    """The container's facts when an engine the agent knows runs in it, else None."""
    argv = view.words()
    inv = locate(argv, env=view.env)
    if inv is None:
        return None
    redact = _redact(redactor, view.secret_env)
    parsed = parse_args(inv.spec, argv, view.env, redact)
    facts: dict[str, FactValue] = {}
    provenance: dict[str, Provenance] = {}
    problems = list(parsed.problems)
    settings: dict[str, Setting] = {}

    def add(key: str, value: FactValue, source: str, method: str, detail: str) -> None:
        try:
            validate_key(key)
        except FactError as e:
            problems.append(f"{detail}: {e}")
            return
        facts[key] = value
        provenance[key] = Provenance(source, method, detail)

    how = "implied: " + view.implied if view.implied else "command line of " + view.where
    add("runtime.engine", inv.spec.name, "process", "arg", how)
    for s in parsed.settings:
        if _templated(s.value) and not s.key.startswith("runtime.args."):
            problems.append(
                f"{s.detail}: {s.key} is a template placeholder filled at deploy time: not judged"
            )
            continue
        add(s.key, s.value, "process", s.method, s.detail)
        settings[s.key] = s
    _manifest_facts(view, redactor, add)
    replica = Replica(
        pod=f"{view.obj.kind}/{view.obj.name}/{view.name}",
        facts=facts,
        provenance=provenance,
        sources={
            "process": SourceStatus("process", SourceState.OK, how),
            "pod": SourceStatus("pod", SourceState.OK, f"manifest {view.obj.file}"),
        },
    )
    return Derived(view, inv, parsed, replica, settings, problems)


def _manifest_facts(view: ContainerView, redactor: Redactor, add: _Add) -> None:
    """What the pod source would read from the Pod object, read from the manifest."""
    where = f"{view.obj.file}:{view.image_line} {view.where}"
    add("orchestration.image", redactor.text(view.image), "pod", "k8s", f"{where} image")
    digest = _DIGEST_REF.search(view.image)
    if digest is not None:
        add(
            "orchestration.image_digest",
            image_digest(digest.group(1)) or digest.group(1),
            "pod",
            "k8s",
            where,
        )
    for part, amounts in view.resources.items():
        for res, qty in sorted(amounts.items()):
            add(f"orchestration.resources.{part}.{res}", qty, "pod", "k8s", f"resources.{part}")
    if view.gpu_selector is not None:
        label, values, _ = view.gpu_selector
        classes = sorted({gpu_class_name(v) for v in values})
        if len(classes) == 1:
            add(
                "orchestration.node_gpu_product",
                classes[0],
                "pod",
                "k8s",
                f"node selector {label}={values[0]}",
            )
    for k, v in sorted(view.labels.items()):
        add(f"orchestration.labels.{k}", redactor.value(k, v), "pod", "k8s", "pod template labels")
    for k, v in sorted(view.annotations.items()):
        add(f"orchestration.annotations.{k}", redactor.value(k, v), "pod", "k8s", "pod template annotations")
    if view.obj.namespace:
        add("orchestration.namespace", view.obj.namespace, "pod", "k8s", "metadata.namespace")
    add("orchestration.workload", view.obj.workload, "pod", "k8s", f"{view.obj.file}:{view.obj.line}")


def gpu_limit(facts: Mapping[str, FactValue]) -> int | None:
    """GPUs the container is given (``nvidia.com/gpu`` / ``amd.com/gpu`` limits, else requests)."""
    for part in ("limits", "requests"):
        for res in ("nvidia.com/gpu", "amd.com/gpu"):
            raw = facts.get(f"orchestration.resources.{part}.{res}")
            if raw is None:
                continue
            try:
                return int(str(raw))
            except ValueError:
                return None
    return None
