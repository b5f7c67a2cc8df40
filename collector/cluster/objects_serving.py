"""What stands in front of a workload, as ``serving.*`` facts: its Service, the Ingresses,
HTTPRoutes and Istio VirtualServices routing to it, the DestinationRule's traffic policy, and the
InferencePools selecting its pods. Pure.

The joins: a Service selects the workload when its selector matches the labels of the
workload's pod template; an Ingress's backend names a Service; an HTTPRoute's backendRef names a
Service or an InferencePool (whose selector matches the pod labels); a VirtualService's
destination host and a DestinationRule's host name a Service (short name, ``name.namespace``, or
``name.namespace.svc[.cluster.local]``). Only objects of the workload's own namespace count
(a cross-namespace reference is left out, as it needs a ReferenceGrant this watch does not read).

When several objects give one value, the tightest wins for limits (the smallest timeout, retry
count or body size a request meets on some route) and the first in source order otherwise; every
route is listed in ``serving.route``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.cluster.objects_common import (
    MAX_LIST,
    FactSink,
    Src,
    cut,
    duration_seconds,
    integer,
    mapping,
    nginx_size,
    on_off,
    seconds,
    seq,
    str_map,
    text,
)
from skewwatch.core.facts import FactValue

Parser = Callable[[object], FactValue]


def _streaming(value: object) -> FactValue:
    buffering = on_off(value)
    return None if buffering is None else not buffering  # buffering off: tokens stream through


def _retries_from_tries(value: object) -> FactValue:
    # proxy_next_upstream_tries counts tries, the first included; 0 lifts the limit (no fact).
    tries = integer(value)
    return tries - 1 if tries is not None and tries > 0 else None


def _int(value: object) -> FactValue:
    return integer(value)


def _duration(value: object) -> FactValue:
    return duration_seconds(value)


def _seconds(value: object) -> FactValue:
    return seconds(value)


def _bytes(value: object) -> FactValue:
    return nginx_size(value)


def _text(value: object) -> FactValue:
    t = text(value)
    return cut(t, 256) if t else None


# Ingress annotations each controller reads, as data: annotation → fact key, parser.
# ingress-nginx: https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/
#   (proxy-read-timeout / proxy-send-timeout in seconds; proxy-body-size an nginx size, "0" no limit;
#   proxy-buffering on|off; proxy-next-upstream-tries the tries, the first included).
# F5 NGINX Ingress Controller: https://docs.nginx.com/nginx-ingress-controller/configuration/
#   ingress-resources/advanced-configuration-with-annotations/ (nginx.org/*: durations like 60s,
#   client-max-body-size an nginx size, proxy-buffering True|False).
INGRESS_ANNOTATIONS: tuple[tuple[str, str, Parser], ...] = (
    ("nginx.ingress.kubernetes.io/proxy-read-timeout", "serving.timeout_seconds", _seconds),
    ("nginx.ingress.kubernetes.io/proxy-send-timeout", "serving.send_timeout_seconds", _seconds),
    ("nginx.ingress.kubernetes.io/proxy-body-size", "serving.max_body_bytes", _bytes),
    ("nginx.ingress.kubernetes.io/proxy-buffering", "serving.streaming", _streaming),
    ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "serving.retries", _retries_from_tries),
    ("nginx.org/proxy-read-timeout", "serving.timeout_seconds", _seconds),
    ("nginx.org/proxy-send-timeout", "serving.send_timeout_seconds", _seconds),
    ("nginx.org/client-max-body-size", "serving.max_body_bytes", _bytes),
    ("nginx.org/proxy-buffering", "serving.streaming", _streaming),
)
# The ingress classes whose controllers read those annotations (a class of another controller
# only contributes serving.route). No class at all: the cluster's default class decides, and only
# those controllers read annotations with these prefixes.
NGINX_CLASS_WORD = "nginx"
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

# Istio DestinationRule spec.trafficPolicy fields → serving.mesh.* (istio.io/latest/docs/reference/
# config/networking/destination-rule/: ConnectionPoolSettings, OutlierDetection, LoadBalancerSettings).
_POOL, _HTTP = "connection_pool", "connection_pool.http"
MESH_FIELDS: tuple[tuple[tuple[str, ...], str, Parser], ...] = (
    (("connectionPool", "tcp", "maxConnections"), "connection_pool.tcp.max_connections", _int),
    (("connectionPool", "tcp", "connectTimeout"), "connection_pool.tcp.connect_timeout_seconds", _duration),
    (("connectionPool", "http", "http1MaxPendingRequests"), f"{_HTTP}.http1_max_pending_requests", _int),
    (("connectionPool", "http", "http2MaxRequests"), "connection_pool.http.http2_max_requests", _int),
    (("connectionPool", "http", "maxRequestsPerConnection"), f"{_HTTP}.max_requests_per_connection", _int),
    (("connectionPool", "http", "maxRetries"), "connection_pool.http.max_retries", _int),
    (("connectionPool", "http", "idleTimeout"), "connection_pool.http.idle_timeout_seconds", _duration),
    (("outlierDetection", "consecutive5xxErrors"), "outlier_detection.consecutive_5xx_errors", _int),
    (("outlierDetection", "consecutiveGatewayErrors"), "outlier_detection.consecutive_gateway_errors", _int),
    (("outlierDetection", "interval"), "outlier_detection.interval_seconds", _duration),
    (("outlierDetection", "baseEjectionTime"), "outlier_detection.base_ejection_time_seconds", _duration),
    (("outlierDetection", "maxEjectionPercent"), "outlier_detection.max_ejection_percent", _int),
    (("loadBalancer", "simple"), "load_balancer", _text),
)  # fmt: skip

# Limits: where several routes set one, the tightest is what some request meets.
TIGHTEST = frozenset({
    "serving.timeout_seconds", "serving.backend_timeout_seconds", "serving.send_timeout_seconds",
    "serving.retry_per_try_timeout_seconds", "serving.max_body_bytes", "serving.retries",
})  # fmt: skip
ROUTE = "serving.route"
POOL = "serving.inference_pool"
POOL_PORTS = "serving.inference_pool_ports"  # the target ports of every pool selecting the workload
# Service port protocol: appProtocol (or the port name's prefix, Istio's naming convention).
PROTOCOLS: dict[str, str] = {
    "http": "http", "http2": "h2c", "h2c": "h2c", "kubernetes.io/h2c": "h2c", "grpc": "grpc",
    "grpc-web": "grpc", "https": "https", "kubernetes.io/ws": "http", "kubernetes.io/wss": "https",
}  # fmt: skip
INFERENCE_GROUPS = frozenset({"inference.networking.k8s.io", "inference.networking.x-k8s.io"})


@dataclass(frozen=True)
class Target:
    """A workload as the serving layer sees it: the labels of its pod templates."""

    workload: str
    labels: tuple[Mapping[str, str], ...]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pool_selector(obj: Mapping[str, Any]) -> dict[str, str]:
    """An InferencePool's selector: ``spec.selector.matchLabels`` (v1), else ``spec.selector``
    itself, a label map (v1alpha2)."""
    sel = mapping(mapping(obj.get("spec")).get("selector"))
    if isinstance(sel.get("matchLabels"), Mapping):
        return str_map(sel.get("matchLabels"))
    return str_map(sel)


def pool_ports(obj: Mapping[str, Any]) -> list[tuple[int, str]]:
    """An InferencePool's target ports and where: ``spec.targetPorts[].number`` (v1), else
    ``spec.targetPortNumber`` (v1alpha2)."""
    spec = mapping(obj.get("spec"))
    out = []
    for i, p in enumerate(seq(spec.get("targetPorts"))[:8]):  # v1 allows at most 8
        number = integer(mapping(p).get("number"))
        if number is not None:
            out.append((number, f"spec.targetPorts[{i}].number"))
    single = integer(spec.get("targetPortNumber"))
    if not out and single is not None:
        out.append((single, "spec.targetPortNumber"))
    return out


def service_host(host: object, namespace: str) -> str | None:
    """The Service a mesh host names in ``namespace``: ``svc``, ``svc.ns``, ``svc.ns.svc…``."""
    h = text(host)
    if not h or "*" in h:
        return None
    parts = h.strip().lower().split(".")
    if len(parts) == 1:
        return parts[0]
    if parts[1] != namespace or (len(parts) > 2 and parts[2] != "svc"):
        return None
    return parts[0]


@dataclass
class Serving:
    """The serving facts of every workload of one namespace."""

    namespace: str
    targets: Sequence[Target]
    objects: Callable[[str], Mapping[str, Mapping[str, Any]]]
    candidates: dict[str, dict[str, list[tuple[FactValue, str]]]] = field(default_factory=dict)
    service_of: dict[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    by_service: dict[str, list[str]] = field(default_factory=dict)
    by_pool: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._services()
        self._pools()
        self._ingresses()
        self._httproutes()
        self._virtualservices()
        self._destinationrules()

    def offer(self, workloads: Sequence[str], key: str, value: FactValue, detail: str) -> None:
        if value is None:
            return
        for w in workloads:
            self.candidates.setdefault(w, {}).setdefault(key, []).append((value, detail))

    def _selected(self, selector: Mapping[str, str]) -> list[str]:
        return [t.workload for t in self.targets if any(selects(selector, labels) for labels in t.labels)]

    def _services(self) -> None:
        for name, svc in sorted(self.objects("Service").items()):
            spec = mapping(svc.get("spec"))
            workloads = self._selected(str_map(spec.get("selector")))
            self.by_service[name] = workloads
            headless = spec.get("clusterIP") == "None"
            for w in workloads:
                current = self.service_of.get(w)
                # A Service with a cluster IP serves clients; a headless one only names pods.
                if current is None or (
                    mapping(current[1].get("spec")).get("clusterIP") == "None" and not headless
                ):
                    self.service_of[w] = (name, svc)

    def _pools(self) -> None:
        for name, pool in sorted(self.objects("InferencePool").items()):
            workloads = self._selected(pool_selector(pool))
            self.by_pool[name] = workloads
            src = self._src("InferencePool", name, pool)
            for port, path in pool_ports(pool):
                self.offer(workloads, POOL_PORTS, port, src.at(path))
            self.offer(
                workloads,
                POOL,
                f"InferencePool/{self.namespace}/{name}",
                self._src("InferencePool", name, pool).at("spec.selector"),
            )

    def _src(self, kind: str, name: str, obj: Mapping[str, Any]) -> Src:
        return Src.of(kind, self.namespace, name, obj)

    def _ingresses(self) -> None:
        for name, ing in sorted(self.objects("Ingress").items()):
            src = self._src("Ingress", name, ing)
            spec = mapping(ing.get("spec"))
            annotations = str_map(mapping(ing.get("metadata")).get("annotations"))
            cls = text(spec.get("ingressClassName")) or annotations.get(INGRESS_CLASS_ANNOTATION)
            backends: list[tuple[str, str, str]] = []  # service, host, path
            default = text(mapping(mapping(spec.get("defaultBackend")).get("service")).get("name"))
            if default:
                backends.append((default, "*", "/"))
            for r in seq(spec.get("rules"))[:MAX_LIST]:
                rule = mapping(r)
                host = text(rule.get("host")) or "*"
                for p in seq(mapping(rule.get("http")).get("paths"))[:MAX_LIST]:
                    entry = mapping(p)
                    svc = text(mapping(mapping(entry.get("backend")).get("service")).get("name"))
                    if svc:
                        backends.append((svc, host, text(entry.get("path")) or "/"))
            reached: list[str] = []
            for svc, host, path in backends:
                workloads = self.by_service.get(svc, [])
                route = cut(
                    f"Ingress/{self.namespace}/{name} {host}{path if path.startswith('/') else '/' + path}",
                    512,
                )
                self.offer(workloads, ROUTE, route, src.at(f"spec.rules → Service {svc}"))
                reached.extend(w for w in workloads if w not in reached)
            if cls is not None and NGINX_CLASS_WORD not in cls.lower():
                continue
            for annotation, key, parse in INGRESS_ANNOTATIONS:
                if annotation in annotations:
                    self.offer(
                        reached,
                        key,
                        parse(annotations[annotation]),
                        src.at(f"metadata.annotations[{annotation}]"),
                    )

    def _httproutes(self) -> None:
        for name, route in sorted(self.objects("HTTPRoute").items()):
            src = self._src("HTTPRoute", name, route)
            for i, r in enumerate(seq(mapping(route.get("spec")).get("rules"))[:MAX_LIST]):
                rule = mapping(r)
                workloads: list[str] = []
                for b in seq(rule.get("backendRefs"))[:MAX_LIST]:
                    ref = mapping(b)
                    if (text(ref.get("namespace")) or self.namespace) != self.namespace:
                        continue
                    kind, group = text(ref.get("kind")) or "Service", text(ref.get("group")) or ""
                    target = text(ref.get("name")) or ""
                    if kind == "Service" and group in ("", "core"):
                        found = self.by_service.get(target, [])
                    elif kind == "InferencePool" and group in INFERENCE_GROUPS:
                        found = self.by_pool.get(target, [])
                    else:
                        continue
                    workloads.extend(w for w in found if w not in workloads)
                where = f"spec.rules[{i}]"
                self.offer(
                    workloads, ROUTE, f"HTTPRoute/{self.namespace}/{name}", src.at(f"{where}.backendRefs")
                )
                timeouts = mapping(rule.get("timeouts"))
                self.offer(
                    workloads,
                    "serving.timeout_seconds",
                    duration_seconds(timeouts.get("request")),
                    src.at(f"{where}.timeouts.request"),
                )
                self.offer(
                    workloads,
                    "serving.backend_timeout_seconds",
                    duration_seconds(timeouts.get("backendRequest")),
                    src.at(f"{where}.timeouts.backendRequest"),
                )
                retry = mapping(rule.get("retry"))
                self.offer(
                    workloads,
                    "serving.retries",
                    integer(retry.get("attempts")),
                    src.at(f"{where}.retry.attempts"),
                )
                self.offer(
                    workloads,
                    "serving.retry_backoff_seconds",
                    duration_seconds(retry.get("backoff")),
                    src.at(f"{where}.retry.backoff"),
                )

    def _virtualservices(self) -> None:
        for name, vs in sorted(self.objects("VirtualService").items()):
            src = self._src("VirtualService", name, vs)
            for i, h in enumerate(seq(mapping(vs.get("spec")).get("http"))[:MAX_LIST]):
                http = mapping(h)
                workloads: list[str] = []
                for d in seq(http.get("route"))[:MAX_LIST]:
                    svc = service_host(mapping(mapping(d).get("destination")).get("host"), self.namespace)
                    if svc is not None:
                        workloads.extend(w for w in self.by_service.get(svc, []) if w not in workloads)
                where = f"spec.http[{i}]"
                self.offer(
                    workloads, ROUTE, f"VirtualService/{self.namespace}/{name}", src.at(f"{where}.route")
                )
                self.offer(
                    workloads,
                    "serving.timeout_seconds",
                    duration_seconds(http.get("timeout")),
                    src.at(f"{where}.timeout"),
                )
                retries = mapping(http.get("retries"))
                self.offer(
                    workloads,
                    "serving.retries",
                    integer(retries.get("attempts")),
                    src.at(f"{where}.retries.attempts"),
                )
                self.offer(
                    workloads,
                    "serving.retry_per_try_timeout_seconds",
                    duration_seconds(retries.get("perTryTimeout")),
                    src.at(f"{where}.retries.perTryTimeout"),
                )

    def _destinationrules(self) -> None:
        for name, dr in sorted(self.objects("DestinationRule").items()):
            spec = mapping(dr.get("spec"))
            svc = service_host(spec.get("host"), self.namespace)
            workloads = self.by_service.get(svc, []) if svc is not None else []
            policy = mapping(spec.get("trafficPolicy"))
            src = self._src("DestinationRule", name, dr)
            for path, suffix, parse in MESH_FIELDS:
                node: object = policy
                for part in path:
                    node = mapping(node).get(part)
                if node is not None:
                    self.offer(
                        workloads,
                        f"serving.mesh.{suffix}",
                        parse(node),
                        src.at("spec.trafficPolicy." + ".".join(path)),
                    )

    def facts(self, workload: str, sink: FactSink) -> None:
        """The serving facts of one workload into its sink."""
        service = self.service_of.get(workload)
        if service is not None:
            self._service_facts(sink, *service)
        for key, offers in sorted(self.candidates.get(workload, {}).items()):
            if key in (ROUTE, POOL):
                values = sorted({str(v) for v, _ in offers})[:MAX_LIST]
                details = "; ".join(sorted({d for _, d in offers}))
                sink.add(key, values[0] if len(values) == 1 else list(values), details)
                continue
            if key == POOL_PORTS:
                numbers = sorted({v for v, _ in offers if isinstance(v, int)})[:MAX_LIST]
                ports: list[FactValue] = list(numbers)
                sink.add(key, ports, "; ".join(sorted({d for _, d in offers})))
                continue
            if key in TIGHTEST:
                value, detail = min(
                    offers, key=lambda vd: (float(vd[0]) if isinstance(vd[0], int | float) else 0.0, vd[1])
                )
            else:
                value, detail = min(offers, key=lambda vd: vd[1])
            sink.add(key, value, detail)

    def _service_facts(self, sink: FactSink, name: str, svc: Mapping[str, Any]) -> None:
        src = self._src("Service", name, svc)
        sink.add("serving.service.name", f"Service/{self.namespace}/{name}", src.at("spec.selector"))
        ports = [mapping(p) for p in seq(mapping(svc.get("spec")).get("ports"))[:MAX_LIST]]
        if not ports:
            return
        port = ports[0]
        pname = text(port.get("name")) or ""
        number = integer(port.get("port"))
        if number is not None:
            sink.add("serving.service.port", number, src.at(f"spec.ports[{pname or 0}].port"))
        target = port.get("targetPort")
        target_value = integer(target) if integer(target) is not None else text(target)
        if target_value is not None:
            sink.add(
                "serving.service.target_port", target_value, src.at(f"spec.ports[{pname or 0}].targetPort")
            )
        app = (text(port.get("appProtocol")) or "").lower()
        if app in PROTOCOLS:
            sink.add(
                "serving.service.protocol", PROTOCOLS[app], src.at(f"spec.ports[{pname or 0}].appProtocol")
            )
        elif (prefix := pname.lower().split("-", 1)[0]) in PROTOCOLS:
            sink.add("serving.service.protocol", PROTOCOLS[prefix], src.at(f"spec.ports[{pname}].name"))
