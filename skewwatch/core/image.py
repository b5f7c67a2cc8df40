"""Container image references, as Kubernetes and the runtimes read them. Pure.

``registry:5000/org/repo:tag@sha256:…``: a ``:`` in the last path component starts the tag (one
in the registry part is its port), ``@`` starts the digest. One parser for the pre-deploy check
(a mutable tag), the evidence bundle (tag and digest) and the exported identity metric (the tag,
never the digest).
"""

from __future__ import annotations

UNKNOWN = "unknown"


def image_reference(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; a port in the registry is not a tag."""
    name, _, digest = image.strip().partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    repo = name[: len(name) - len(tag) - 1] if tag is not None else name
    return repo, tag, digest or None


def image_tag(image: object) -> str:
    """The tag of an image reference, never its digest: ``repo:tag@sha256:…`` -> ``tag``; no tag
    and no digest -> ``latest`` (what the runtime pulls); a digest alone, or no image -> ``unknown``."""
    if not isinstance(image, str) or not image.strip():
        return UNKNOWN
    _, tag, digest = image_reference(image)
    if tag is not None:
        return tag or UNKNOWN
    return UNKNOWN if digest else "latest"
