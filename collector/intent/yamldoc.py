"""YAML (and JSON) documents with the line of every field, for errors that say where.

``load_documents(text, file)`` composes the YAML node tree (``yaml.compose_all``) and converts it
to plain JSON-like data itself, recording the 1-based line of every mapping key and sequence
item under its field path. Bounded: the text, the node count and the nesting depth are capped,
so an alias bomb or a huge document is an error, not a hang. Duplicate keys are errors (YAML
says so; PyYAML silently keeps the last). Non-JSON scalars (timestamps, binary) are read as
their source text so a schema can reject them by type.

Whatever the text, the outcome is documents or an ``IntentError``: nesting is capped while
composing (PyYAML's composer recurses, so deep ``[[[…]]]`` would otherwise be a RecursionError),
and a scalar that PyYAML's constructor cannot build (a 100,000-digit integer, a timestamp with
month 13) is an issue at its line, not a crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from collector.errors import IntentError, IntentIssue

MAX_TEXT_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 32
MAX_DOCUMENTS = 256
# The names these limits are counted by (docs/collector-limits.md).
LIMIT_TEXT = "max_intent_file_bytes"
LIMIT_NODES = "max_intent_nodes"
LIMIT_DEPTH = "max_intent_depth"
LIMIT_DOCUMENTS = "max_intent_documents"

Path = tuple[str | int, ...]


def path_text(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass
class Document:
    """One YAML document: its data, the file it came from and the line of each field path."""

    data: Any
    file: str
    lines: dict[Path, int] = field(default_factory=dict)
    start_line: int = 1

    def line(self, path: Path) -> int:
        """The line of ``path``, else of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.start_line

    def issue(self, path: Path, message: str) -> IntentIssue:
        return IntentIssue(self.file, self.line(path), path_text(path), message)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than ``MAX_DEPTH`` before recursing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH + 1:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Converter:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise IntentError(
                [self.doc.issue(path, f"document has more than {MAX_NODES} nodes")], limit=LIMIT_NODES
            )
        if depth > MAX_DEPTH:
            raise IntentError(
                [self.doc.issue(path, f"nested deeper than {MAX_DEPTH} levels")], limit=LIMIT_DEPTH
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise IntentError(
                        [
                            IntentIssue(
                                self.doc.file,
                                key_node.start_mark.line + 1,
                                path_text(path),
                                "mapping keys must be plain strings",
                            )
                        ]
                    )
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise IntentError(
                        [
                            IntentIssue(
                                self.doc.file,
                                key_node.start_mark.line + 1,
                                path_text(path),
                                "YAML merge keys (<<) are not supported in intent documents",
                            )
                        ]
                    )
                key = str(key_node.value)
                child = (*path, key)
                if key in out:
                    raise IntentError(
                        [
                            IntentIssue(
                                self.doc.file, key_node.start_mark.line + 1, path_text(child), "duplicate key"
                            )
                        ]
                    )
                self.doc.lines[child] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, child, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                child = (*path, i)
                self.doc.lines[child] = item.start_mark.line + 1
                items.append(self.convert(item, child, depth + 1))
            return items
        assert isinstance(node, yaml.ScalarNode)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            raise IntentError(
                [IntentIssue(self.doc.file, node.start_mark.line + 1, path_text(path), str(e))]
            ) from e
        except (ValueError, OverflowError, TypeError) as e:  # int() over 4300 digits, a bad date
            raise IntentError(
                [
                    IntentIssue(
                        self.doc.file,
                        node.start_mark.line + 1,
                        path_text(path),
                        f"cannot read {str(node.value)[:40]!r}: {str(e)[:200]}",
                    )
                ]
            ) from e
        if value is None or isinstance(value, bool | int | float | str):
            if isinstance(value, float) and not math.isfinite(value):  # NaN, ±inf: not JSON values
                return str(node.value)
            return value
        return str(node.value)


def load_documents(text: str | bytes, file: str) -> list[Document]:
    """Every non-empty document in ``text``; raises IntentError naming file and line."""
    if isinstance(text, bytes):
        if len(text) > MAX_TEXT_BYTES:
            raise IntentError(
                [IntentIssue(file, None, "", f"{len(text)} bytes, over {MAX_TEXT_BYTES}")], limit=LIMIT_TEXT
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise IntentError([IntentIssue(file, None, "", f"not UTF-8: {e}")]) from e
    if len(text) > MAX_TEXT_BYTES:
        raise IntentError(
            [IntentIssue(file, None, "", f"{len(text)} characters, over {MAX_TEXT_BYTES}")], limit=LIMIT_TEXT
        )
    docs: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=_BoundedLoader):
            if node is None:
                continue
            if len(docs) >= MAX_DOCUMENTS:
                raise IntentError(
                    [IntentIssue(file, None, "", f"more than {MAX_DOCUMENTS} documents")],
                    limit=LIMIT_DOCUMENTS,
                )
            doc = Document(None, file, start_line=node.start_mark.line + 1)
            doc.data = _Converter(doc).convert(node, (), 0)
            docs.append(doc)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        deep = isinstance(e, yaml.composer.ComposerError) and "nested deeper than" in str(e.problem)
        raise IntentError(
            [IntentIssue(file, line, "", f"not valid YAML: {e.problem or e}")],
            limit=LIMIT_DEPTH if deep else None,
        ) from e
    except yaml.YAMLError as e:
        raise IntentError([IntentIssue(file, None, "", f"not valid YAML: {e}")]) from e
    except RecursionError as e:
        raise IntentError(
            [IntentIssue(file, None, "", f"nested deeper than {MAX_DEPTH} levels")], limit=LIMIT_DEPTH
        ) from e
    return docs
