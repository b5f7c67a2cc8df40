"""How Kubernetes starts a container, as far as skewwatch reads it before the container runs. Pure.

The kubelet's ``$(VAR)`` expansion of command, args and env values, and the entrypoints of the
engine images whose containers often give no ``command``. The pre-deploy check reads manifests
with them and the injecting webhook finds the inference container of a pod with them: one
reading of a container spec for both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Images whose entrypoint starts an engine, by the last segment of the repository: a container
# of these with no ``command`` runs it (the images' own Dockerfiles: TGI's ENTRYPOINT is
# text-generation-launcher, vllm/vllm-openai's is ``vllm serve``).
IMAGE_ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    "text-generation-inference": ("text-generation-launcher",),
    "vllm-openai": ("vllm", "serve"),
}

_K8S_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` as the kubelet expands it in command, args and env values: a defined variable
    is replaced, an undefined one stays as written, ``$$`` is a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _K8S_REF.sub(sub, text)
