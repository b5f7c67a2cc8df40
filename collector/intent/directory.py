"""The intents the collector knows: a watched directory of YAML files plus those posted to the API.

``IntentRegistry.poll()`` re-reads the directory when any file's mtime or size changed (polled,
not inotify, so it works on ConfigMap volumes, whose files change by symlink swap). A file that
fails to parse keeps its last good intents and is reported in ``errors()``; a removed file drops
its intents. API intents are kept beside them; where both define the same kind/name, the API's
wins and the listing says so. Reading files is the only I/O here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from collector.errors import IntentError, IntentIssue
from collector.intent.model import Intent, parse_documents
from collector.intent.yamldoc import LIMIT_TEXT, MAX_TEXT_BYTES

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILES = 1000
LIMIT_FILES = "max_intent_files"


@dataclass
class _FileState:
    stamp: tuple[int, int]
    intents: list[Intent] = field(default_factory=list)
    issues: list[IntentIssue] = field(default_factory=list)


class LimitEvents(Protocol):
    """Who hears of an intent over a limit (the service layer's ``ServiceEvents``, structurally:
    intents sit below the service and do not import it)."""

    def limit_exceeded(self, limit: str) -> None: ...


class _NoEvents:
    def limit_exceeded(self, limit: str) -> None:
        """Not counted."""


class IntentRegistry:
    """The intents in effect: the directory's files (``poll``) and the API's. A file over an
    intent limit (size, documents, nodes, depth: ``yamldoc``) or a directory over ``MAX_FILES``
    is told to ``events.limit_exceeded`` once per change of the file (or of the directory)."""

    def __init__(self, directory: Path | None = None, events: LimitEvents | None = None) -> None:
        self.directory = directory
        self.events: LimitEvents = events if events is not None else _NoEvents()
        self._over_files = False
        self._files: dict[str, _FileState] = {}
        self._api: dict[tuple[str, str], Intent] = {}
        self.generation = 0  # bumps whenever the effective set of intents changes

    # -- directory -----------------------------------------------------------------------------

    def _scan(self) -> dict[str, tuple[int, int]]:
        assert self.directory is not None
        found: dict[str, tuple[int, int]] = {}
        try:
            entries = sorted(self.directory.rglob("*"))
        except OSError as e:
            log.error("intents directory %s cannot be listed: %s", self.directory, e)
            return {name: st.stamp for name, st in self._files.items()}
        for path in entries:
            # ConfigMap volumes hold their files under ..data/ and timestamped dirs: skip dot-dirs.
            if path.suffix not in SUFFIXES or any(
                p.startswith(".") for p in path.relative_to(self.directory).parts
            ):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            if len(found) >= MAX_FILES:
                if not self._over_files:  # once per time the directory goes over, not every poll
                    self.events.limit_exceeded(LIMIT_FILES)
                    log.error(
                        "intents directory %s: more than %d files (%s), the rest ignored",
                        self.directory,
                        MAX_FILES,
                        LIMIT_FILES,
                    )
                self._over_files = True
                break
            found[str(path)] = (st.st_mtime_ns, st.st_size)
        else:
            self._over_files = False
        return found

    def poll(self) -> bool:
        """Re-read changed files; True when the effective intents changed."""
        if self.directory is None:
            return False
        stamps = self._scan()
        changed = False
        for name in list(self._files):
            if name not in stamps:
                del self._files[name]
                changed = True
                log.info("intents: %s removed", name)
        for name, stamp in stamps.items():
            old = self._files.get(name)
            if old is not None and old.stamp == stamp:
                continue
            state = _FileState(stamp, list(old.intents) if old else [])
            try:
                with open(name, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size > MAX_TEXT_BYTES:  # refused unread, naming its real size
                        raise IntentError(
                            [
                                IntentIssue(
                                    _display(name, self.directory),
                                    None,
                                    "",
                                    f"{size} bytes, over the {MAX_TEXT_BYTES}-byte limit of an intent file "
                                    f"({LIMIT_TEXT})",
                                )
                            ],
                            limit=LIMIT_TEXT,
                        )
                    state.intents = parse_documents(
                        f.read(MAX_TEXT_BYTES + 1), _display(name, self.directory)
                    )
                log.info("intents: loaded %s (%d document(s))", name, len(state.intents))
                changed = True
            except IntentError as e:
                if e.limit is not None:
                    self.events.limit_exceeded(e.limit)
                state.issues = e.issues
                log.error("intents: %s is invalid; keeping its last good version:\n%s", name, e)
            except OSError as e:
                state.issues = [IntentIssue(_display(name, self.directory), None, "", f"cannot read: {e}")]
                log.error("intents: cannot read %s: %s", name, e)
            self._files[name] = state
        if changed:
            self.generation += 1
        return changed

    # -- API -----------------------------------------------------------------------------------

    def set_api(self, intents: list[Intent]) -> None:
        self._api = {(i.kind, i.name): i for i in intents}
        self.generation += 1

    def put_api(self, intent: Intent) -> None:
        self._api[(intent.kind, intent.name)] = intent
        self.generation += 1

    def api_keys(self) -> set[tuple[str, str]]:
        """(kind, name) of each intent posted through the API."""
        return set(self._api)

    def delete_api(self, kind: str, name: str) -> None:
        self._api.pop((kind, name), None)
        self.generation += 1

    # -- views ---------------------------------------------------------------------------------

    def intents(self) -> list[Intent]:
        out: dict[tuple[str, str], Intent] = {}
        for name in sorted(self._files):
            for i in self._files[name].intents:
                out.setdefault((i.kind, i.name), i)
        out.update(self._api)
        return [out[k] for k in sorted(out)]

    def get(self, kind: str, name: str) -> Intent | None:
        return next((i for i in self.intents() if i.kind == kind and i.name == name), None)

    def listing(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        effective = {(i.kind, i.name): i for i in self.intents()}
        for name in sorted(self._files):
            for i in self._files[name].intents:
                shadowed = effective.get((i.kind, i.name)) is not i
                rows.append(_row(i, "directory", "overridden" if shadowed else "active"))
        for i in self._api.values():
            rows.append(_row(i, "api", "active"))
        return sorted(rows, key=lambda r: (str(r["kind"]), str(r["name"]), str(r["origin"])))

    def errors(self) -> list[IntentIssue]:
        return [issue for name in sorted(self._files) for issue in self._files[name].issues]


def _row(i: Intent, origin: str, state: str) -> dict[str, object]:
    return {"kind": i.kind, "name": i.name, "file": i.file, "origin": origin, "state": state}


def _display(name: str, directory: Path | None) -> str:
    if directory is None:
        return name
    try:
        return os.path.relpath(name, directory)
    except ValueError:
        return name
