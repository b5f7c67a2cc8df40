"""The repository stands alone: every relative link in its Markdown (README, docs, each folder's
README) names a file that exists in the repo, an anchor names a heading of that file, and no link
leaves the repository by a relative path."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.paths import REPO

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
SKIP_DIRS = {".venv", ".cache", ".git", "node_modules"}


def _pages() -> list[Path]:
    pages = (p for p in REPO.rglob("*.md") if not SKIP_DIRS & set(p.relative_to(REPO).parts))
    return sorted(p for p in pages if "fixtures" not in p.parts)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return out


def test_every_relative_link_resolves_inside_the_repo() -> None:
    broken = []
    for page in _pages():
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code is not prose
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if REPO.resolve() not in (dest, *dest.parents):
                broken.append(f"{page.relative_to(REPO)}: {target} leaves the repository")
            elif not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(REPO)}: {target}: no heading #{anchor}")
    assert not broken, "\n".join(broken)
