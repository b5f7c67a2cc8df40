"""Redaction: secrets never leave the pod in clear.

Shared by the agent (every fact of a snapshot) and the collector (the pod templates it reads
from the Kubernetes API), so both redact by the same rules and, with the same salt, to the same
digests.

Env and arg values whose *name* or *shape* says secret are replaced by
``redacted:sha256:<prefix>``, a salted HMAC-SHA256 digest prefix: a change of the secret is
visible (the digest changes), the value is not. The salt is per installation
(``SKEWWATCH_REDACTION_SALT``) so digests cannot be compared against a public table; replicas
sharing a salt share digests, so peer comparison still works.

Redaction works on what a value means, not only on how it is named:

- a flag given by a prefix (argparse engines accept ``--api-ke``) is judged as the secret flag it
  is a prefix of (:data:`KNOWN_SECRET_FLAGS`, plus the engine tables' own);
- a JSON- or YAML-looking value (``--hf-overrides '{"hf_token": …}'``) is parsed and every
  secret-named key and secret-shaped leaf inside it is redacted, then re-serialised
  deterministically (sorted keys); one that does not parse is redacted whole when it holds a
  secret shape;
- free text (a shell script, an env value, a label) has its header syntax
  (``Authorization: Bearer x``, ``X-Api-Key: x``), ``Bearer``/``Basic`` credentials,
  ``NAME=value`` pairs and lists (``A=1,HF_TOKEN=x``), ``--secret-flag value`` and
  ``"secret_key": "value"`` pairs, URL userinfo and secret-shaped tokens redacted in place.

:func:`redact_collected` is the one pass over every fact (and source message) of a snapshot,
whatever its source: the last fact-key segment is judged like an env or flag name, values are
walked into lists and maps. Redaction is idempotent: a ``redacted:sha256:<16 hex>`` value is
kept as it is, so already-redacted values stay stable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skewwatch.core.facts import Fact, FactValue, SourceStatus

REDACTED_PREFIX = "redacted:sha256:"
# The salt when SKEWWATCH_REDACTION_SALT is not set: the agent's and the collector's default, so
# that their digests of one value agree.
DEFAULT_SALT = "skewwatch.v1"
DIGEST_CHARS = 16

# Secret flags of the engines skewwatch knows (normalised: no dashes, ``-`` between words), so a
# unique prefix of one (``--api-ke``, ``--hf-tok``) is redacted as the flag itself. The engine
# tables' ``api_key_flags`` and secret-named flags are added by ``agent.engines.parse``.
KNOWN_SECRET_FLAGS: tuple[str, ...] = ("api-key", "hf-token", "admin-api-key")
# Secret flags that take one or more values (vLLM's ``--api-key k1 k2``).
MULTI_VALUE_SECRET_FLAGS: tuple[str, ...] = ("api-key",)
# The shortest flag prefix judged as the secret flag it abbreviates (``--a`` is ambiguous in
# every engine, and argparse refuses it).
MIN_FLAG_PREFIX = 2
# JSON/YAML values larger than this are not parsed: they are scanned as text.
MAX_STRUCTURED_CHARS = 256 * 1024
MAX_DEPTH = 32
MAX_STRUCTURED_NODES = 20_000

# Names (env or flag, case-insensitive, any of - _ . as separators) that hold secrets.
_SECRET_NAME = re.compile(
    r"(?:^|[_\-.])(?:token|tokens|secret|secrets|password|passwd|pwd|passphrase|credential|credentials|"
    r"api[_\-.]?key|apikey|access[_\-.]?key|private[_\-.]?key|secret[_\-.]?key|auth|authorization|"
    r"bearer|cookie|session[_\-.]?key|signing[_\-.]?key|client[_\-.]?secret|sas|dsn|conn(?:ection)?[_\-.]?string)"
    r"(?:$|[_\-.])",
    re.IGNORECASE,
)
# Words that measure tokens when they come just before ``tokens`` (plural: a count or a size,
# ``kv_cache_size_tokens``, ``prompt_tokens``), never those naming whose token it is (``api``,
# ``access``, ``auth``, ``github``, ``refresh``, ``id``, ``bearer``, ``session``).
_MEASURE_WORDS = (
    "size|alignment|capacity|cached|cache|prompt|generation|generated|output|input|computed|batched|"
    "total|prefill|decode|draft|accepted|emitted|scheduled|preempted|padded|processed|context|"
    "completion|reasoning|remaining|block|chunk|new|spec|hit|used|free|waiting|running|kv"
)
# Names that look secret by the pattern above but hold only counts, sizes or flags. These parts
# are taken out of a name before it is judged (``is_secret_name``): what remains must still not
# look secret, so ``output_tokens_api_key`` is a secret and ``kv_cache_size_tokens`` is not.
_SEP_BEFORE, _SEP_AFTER = r"(?<![^_\-.])", r"(?![^_\-.])"  # a separator or the name's edge
_NOT_SECRET_NAME = re.compile(
    rf"{_SEP_BEFORE}(?:max|min|num)[_\-.](?:[a-z0-9]+[_\-.])*tokens?{_SEP_AFTER}|"
    rf"{_SEP_BEFORE}tokens?[_\-.](?:per|limit|budget|len|length|count|total){_SEP_AFTER}|"
    rf"{_SEP_BEFORE}(?:{_MEASURE_WORDS})[_\-.]tokens{_SEP_AFTER}|"
    r"tokenizer|(?:^|[_\-.])auth[_\-.]?(?:type|mode|method)$|token[_\-.]?(?:file|path)$",
    re.IGNORECASE,
)
# Values that are secrets whatever their name.
_SECRET_VALUE = re.compile(
    r"(?:^|[^A-Za-z0-9])("
    r"hf_[A-Za-z0-9]{20,}|"  # HuggingFace tokens
    r"sk-[A-Za-z0-9_\-]{16,}|"  # OpenAI-style keys
    r"sk_(?:live|test)_[A-Za-z0-9]{16,}|"
    r"(?:AKIA|ASIA)[A-Z0-9]{16}|"  # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|"
    r"xox[abprs]-[A-Za-z0-9-]{10,}|"  # Slack
    r"AIza[0-9A-Za-z_\-]{35}|"  # Google API keys
    r"glpat-[A-Za-z0-9_\-]{20,}|"
    r"nvapi-[A-Za-z0-9_\-]{20,}"  # NVIDIA NGC
    r")|("
    # Shapes specific enough to need no boundary: JWTs (glued to text too) and PEM private keys.
    r"eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r")"
)
# Credentials embedded in URLs: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# A digest this module wrote: kept as it is (idempotence).
_DIGEST = re.compile(re.escape(REDACTED_PREFIX) + f"[0-9a-f]{{{DIGEST_CHARS}}}")
# HTTP credentials outside a header: ``Bearer <token>`` and ``Basic <base64 of user:password>``.
_BEARER = re.compile(r"(?<![A-Za-z0-9_])([Bb]earer|BEARER)(\s+)([A-Za-z0-9._~+/=:\-]{4,})")
_BASIC = re.compile(r"(?<![A-Za-z0-9_])(Basic|BASIC|basic)(\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
# An authentication scheme word opening a header value: ``Authorization: Bearer x``.
_AUTH_SCHEME = re.compile(r"(?i)(?:bearer|basic|token|digest|apikey|api-key|key|sso-key|negotiate)\s+")
# ``NAME=value``, ``NAME: value``, ``"NAME": "value"``, ``--flag value`` and ``--flag=value``.
_PAIR = re.compile(
    r"(?<![\w.\-])(?P<q>[\"']?)(?P<dashes>-{0,2})(?P<name>[A-Za-z_][\w.\-]*)(?P=q)"
    r"(?P<sep>[ \t]*[:=][ \t]*|(?:[ \t]|\\\r?\n)+)"
)
# The gap before another value of the same flag: blanks, then no flag and no end of command.
_NEXT_WORD = re.compile(r"(?:[ \t]|\\\r?\n)+(?=[^\s\-;&|<>()#])")
# Where an unquoted value stops in free text; a comma stops it only before another ``NAME=``.
_VALUE_END = re.compile(r"[\s\"'`;&|<>(){}\[\]]|,(?=\s*[A-Za-z_][\w.\-]*\s*[:=])")


class Redactor:
    def __init__(self, salt: str, secret_flags: Iterable[str] = KNOWN_SECRET_FLAGS) -> None:
        self._key = salt.encode("utf-8")
        self.secret_flags = frozenset(_flag(f) for f in secret_flags)

    def digest(self, value: str) -> str:
        mac = hmac.new(self._key, value.encode("utf-8", "surrogateescape"), hashlib.sha256)
        return REDACTED_PREFIX + mac.hexdigest()[:DIGEST_CHARS]

    # --- names ------------------------------------------------------------------------------

    def is_secret_flag(self, flag: str) -> bool:
        """A flag (``--api-key``, ``--api_key``, ``--api-ke``) whose value is a secret."""
        return is_secret_name(flag) or secret_flag_prefix(flag, self.secret_flags) is not None

    # --- values -----------------------------------------------------------------------------

    def value(self, name: str, value: str, force: bool = False) -> str:
        """The value to report for ``name``: itself, redacted inside, or its redacted digest."""
        if _DIGEST.fullmatch(value):
            return value
        if force or is_secret_name(name):
            return self.digest(value)
        structured = self.structured(value)
        if structured is not None:
            return structured
        if is_secret_value(value):
            return self.digest(value)
        return self.text(value)

    def structured(self, value: str) -> str | None:
        """A JSON/YAML-looking ``value`` with the secrets inside it redacted; None when it is not
        structured. Unchanged text stays as written; a redacted document is re-serialised as
        sorted JSON; one that does not parse is redacted whole when it holds a secret."""
        doc = _load_structured(value)
        if doc is _NOT_STRUCTURED:
            return None
        if doc is _UNPARSABLE:
            return self.digest(value) if self.text(value) != value or is_secret_value(value) else value
        redacted = self.tree("", doc)
        if redacted == doc and self.text(value) == value and not is_secret_value(value):
            return value  # nothing secret inside: the value as written
        # Re-serialised from what was parsed and redacted (a duplicate key's hidden value is gone).
        return json.dumps(redacted, sort_keys=True, ensure_ascii=False)

    def tree(self, name: str, value: object, force: bool = False, _depth: int = 0) -> FactValue:
        """A JSON-like value with secret-named entries (``name`` is the key holding it) and
        secret-shaped strings redacted, recursing into lists and maps. Booleans and null stay."""
        secret = force or is_secret_name(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return self.digest(_scalar_text(value)) if secret else value
        if isinstance(value, str):
            return self.value(name, value, force=secret)
        if _depth >= MAX_DEPTH:
            return self.digest(json.dumps(value, sort_keys=True, default=str))
        if isinstance(value, list | tuple):
            return [self.tree(name, v, secret, _depth + 1) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.tree(str(k), v, secret, _depth + 1) for k, v in value.items()}
        return self.value(name, str(value), force=secret)

    def env(self, environ: Mapping[str, str], secret_names: frozenset[str] = frozenset()) -> dict[str, str]:
        """Redact an environment; ``secret_names`` come from ``secretKeyRef`` and are always secret."""
        return {k: self.value(k, v, force=k in secret_names) for k, v in environ.items()}

    def argv(self, argv: Sequence[str]) -> list[str]:
        """Redact a command line: values of secret flags (prefixes included), secrets inside
        JSON-valued arguments, and secret-shaped values anywhere."""
        out: list[str] = []
        secret_next = False  # the value of a secret flag comes next
        more = False  # and (an API-key flag: one or more keys) the values after it
        for arg in argv:
            if secret_next or (more and not arg.startswith("-")):
                first, secret_next = secret_next, False
                if not first or not arg.startswith("--"):
                    out.append(arg if _DIGEST.fullmatch(arg) else self.digest(arg))
                    continue
            more = False
            if arg.startswith("-") and "=" in arg:
                flag, _, val = arg.partition("=")
                force = self.is_secret_flag(flag)
                out.append(self.text(flag) + "=" + self.value(flag.lstrip("-"), val, force=force))
                continue
            if arg.startswith("-") and len(arg) > 1 and self.is_secret_flag(arg):
                out.append(arg)
                secret_next, more = True, takes_several(arg)
                continue
            structured = self.structured(arg)
            out.append(structured if structured is not None else self.text(arg))
        return out

    def text(self, text: str) -> str:
        """Redact secrets inside free text (shell scripts, env values, labels, messages):
        secret-shaped tokens, URL credentials, HTTP credentials and header syntax, and the
        values of secret-named ``NAME=value`` / ``NAME: value`` / ``--flag value`` pairs."""
        if not text or _DIGEST.fullmatch(text):
            return text
        text = _SECRET_VALUE.sub(self._shaped, text)
        text = _URL_CREDENTIALS.sub(
            lambda m: (
                m.group(0)
                if _DIGEST.fullmatch(m.group(2))
                else m.group(1) + self.digest(m.group(2)) + m.group(3)
            ),
            text,
        )
        text = _BEARER.sub(self._credential, text)
        text = _BASIC.sub(
            lambda m: self._credential(m) if _is_basic_credential(m.group(3)) else m.group(0), text
        )
        return self._pairs(text)

    def _shaped(self, m: re.Match[str]) -> str:
        secret = m.group(1) or m.group(2)
        return m.group(0).replace(secret, self.digest(secret))

    def _credential(self, m: re.Match[str]) -> str:
        token = m.group(3)
        return m.group(0) if _DIGEST.match(token) else m.group(1) + m.group(2) + self.digest(token)

    def _pairs(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for m in _PAIR.finditer(text):
            name, dashes, sep = m.group("name"), m.group("dashes"), m.group("sep")
            spaced = ":" not in sep and "=" not in sep
            if spaced and not dashes:
                continue  # ``word value``: only ``--flag value`` pairs a name with the next word
            if not (self.is_secret_flag(dashes + name) if dashes else is_secret_name(name)):
                continue
            start = m.end()
            if spans and start < spans[-1][1]:
                continue  # inside a value already redacted
            if spaced and text.startswith("-", start):
                continue  # ``--hf-token --port 8000``: a switch, no value
            start, end = _value_span(text, start, header=":" in sep)
            if end > start and not _DIGEST.fullmatch(text[start:end]):
                spans.append((start, end))
            if spaced and takes_several(dashes + name):
                # ``--api-key k1 k2``: every key up to the next flag or the end of the command.
                while (more := _NEXT_WORD.match(text, end + (text[end : end + 1] in ("'", '"')))) is not None:
                    start, end = _value_span(text, more.end(), header=False)
                    if end <= start:
                        break
                    if not _DIGEST.fullmatch(text[start:end]):
                        spans.append((start, end))
        for start, end in reversed(spans):
            text = text[:start] + self.digest(text[start:end]) + text[end:]
        return text


def _value_span(text: str, start: int, header: bool) -> tuple[int, int]:
    """The span of the value that starts at ``start``: quoted, or up to where free text ends it.

    After a header-style ``NAME:`` an authentication scheme word (``Bearer``) is kept and the
    credential after it is the value."""
    if start < len(text) and text[start] in "[{":
        return start, _bracket_end(text, start)
    if start < len(text) and text[start] in "\"'":
        quote = text[start]
        end = text.find(quote, start + 1)
        return start + 1, (end if end >= 0 else len(text))
    if header:
        scheme = _AUTH_SCHEME.match(text, start)
        if scheme is not None and scheme.end() < len(text) and not text[scheme.end()].isspace():
            start = scheme.end()
    m = _VALUE_END.search(text, start)
    return start, (m.start() if m is not None else len(text))


def _bracket_end(text: str, start: int) -> int:
    """Where the list or map that opens at ``start`` closes (past its bracket), quotes and nesting
    respected; the end of the text when it never does."""
    closing = {"[": "]", "{": "}"}
    stack: list[str] = []
    quote = ""
    i = start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in closing:
            stack.append(closing[c])
        elif stack and c == stack[-1]:
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return len(text)


def _is_basic_credential(token: str) -> bool:
    """``Basic <token>`` is HTTP Basic credentials when the token is base64 of ``user:password``."""
    if _DIGEST.match(token):
        return False
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _scalar_text(value: int | float) -> str:
    return str(value)


def takes_several(flag: str) -> bool:
    """An API-key flag: vLLM takes one or more keys after it (``--api-key k1 k2``)."""
    name = _flag(flag)
    return any(
        f == name or (flag.startswith("--") and len(name) >= MIN_FLAG_PREFIX and f.startswith(name))
        for f in MULTI_VALUE_SECRET_FLAGS
    )


def _flag(flag: str) -> str:
    return flag.strip().lstrip("-").replace("_", "-").lower()


def secret_flag_prefix(flag: str, secret_flags: Iterable[str]) -> str | None:
    """The secret flag that a long ``--flag`` abbreviates (argparse accepts unique prefixes), or
    None. Ambiguous prefixes count too: redacting one costs nothing, missing one leaks."""
    if not flag.startswith("--"):
        return None
    name = _flag(flag)
    if len(name) < MIN_FLAG_PREFIX:
        return None
    for secret in sorted(secret_flags):
        if secret.startswith(name):
            return secret
    return None


_NOT_STRUCTURED = object()
_UNPARSABLE = object()
_YAML_BLOCK = re.compile(r"^[ \t]*[\"']?[A-Za-z_][\w.\-]*[\"']?[ \t]*:(?:[ \t]|$)", re.MULTILINE)


def _load_structured(value: str) -> object:
    """The JSON (or YAML flow/block mapping) document ``value`` holds; _NOT_STRUCTURED when it
    does not look like one, _UNPARSABLE when it looks like one but does not parse."""
    stripped = value.strip()
    looks_json = stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]")
    looks_yaml = "\n" in stripped and len(_YAML_BLOCK.findall(stripped)) >= 2
    if not (looks_json or looks_yaml):
        return _NOT_STRUCTURED
    if len(stripped) > MAX_STRUCTURED_CHARS:
        return _UNPARSABLE
    if looks_json:
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):
            pass
    try:
        import yaml  # only for values that look structured: not worth its memory otherwise

        doc = yaml.safe_load(stripped)
    except Exception:  # any YAML error (or a hostile document) is "does not parse"
        return _UNPARSABLE
    if isinstance(doc, dict | list):
        return _jsonable(doc)
    return _UNPARSABLE if looks_json else _NOT_STRUCTURED


def _jsonable(doc: object) -> object:
    """A YAML document as JSON-like data (keys as strings, dates and the like as text);
    _UNPARSABLE when it is deeper or larger than a value should be (alias bombs)."""
    budget = [MAX_STRUCTURED_NODES]

    def walk(node: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_DEPTH:
            raise _TooBig
        if isinstance(node, dict):
            return {str(k): walk(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(v, depth + 1) for v in node]
        if node is None or isinstance(node, bool | int | str):
            return node
        if isinstance(node, float):
            return node if math.isfinite(node) else str(node)
        return str(node)

    try:
        return walk(doc, 0)
    except _TooBig:
        return _UNPARSABLE


class _TooBig(Exception):
    pass


def is_secret_name(name: str) -> bool:
    """A name (env, flag, label or fact key) that holds a secret: a secret word is left once the
    parts that only count or size tokens (``_NOT_SECRET_NAME``) are taken out."""
    name = name.strip().lstrip("-")
    return bool(_SECRET_NAME.search(_NOT_SECRET_NAME.sub(" ", name)))


def is_secret_value(value: str) -> bool:
    return bool(_SECRET_VALUE.search(value))


def is_redacted(value: str) -> bool:
    """A digest this module wrote, kept as it is."""
    return bool(_DIGEST.fullmatch(value))


# --- the central pass over a snapshot ---------------------------------------------------------


def _last_segment(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _redact_key(key: str, redactor: Redactor) -> str:
    """A fact key with a secret inside (a flag or label named by a token: ``--hf_…``, with ``-``
    turned into ``_`` as ``runtime.args`` keys are, or a JWT split at its dots) has everything
    after its first two segments replaced by the digest of it."""
    if not any(redactor.text(v) != v for v in (key, key.replace("_", "-"))):
        return key
    head = key.split(".", 2)
    if len(head) == 3:
        return f"{head[0]}.{head[1]}.{redactor.digest(head[2])}"
    return f"{head[0]}.{redactor.digest(head[-1])}"


def redact_fact(fact: Fact, redactor: Redactor) -> Fact:
    """One fact with its key segments, value and provenance detail redacted.

    The value is judged by the key's last segment (``runtime.cache_config.hf_token``,
    ``runtime.env.HF_TOKEN``), as an env or flag name is; a ``runtime.args`` segment that
    abbreviates a secret flag counts as that flag. Source, method and inputs stay as they are.
    """
    key = _redact_key(fact.key, redactor)
    name = _last_segment(fact.key)
    force = fact.key.startswith("runtime.args.") and redactor.is_secret_flag("--" + name)
    whole: list[tuple[str, str]] = []
    value = _tree_noting(redactor, name, fact.value, force, whole)
    detail = fact.provenance.detail
    if detail:
        # A raw value redacted whole may be quoted in the detail (``label hf_token='abc'``).
        for raw, digest in sorted(whole, key=lambda rd: -len(rd[0])):
            detail = detail.replace(repr(raw), repr(digest))
            if len(raw) >= 4:  # shorter: only where quoted, or every "a" would go
                detail = detail.replace(raw, digest)
        detail = redactor.text(detail)
    if key == fact.key and value == fact.value and detail == fact.provenance.detail:
        return fact
    return replace(fact, key=key, value=value, provenance=replace(fact.provenance, detail=detail))


def _tree_noting(
    redactor: Redactor,
    name: str,
    value: FactValue,
    force: bool,
    whole: list[tuple[str, str]],
    *,
    depth: int = 0,
) -> FactValue:
    """:meth:`Redactor.tree`, noting each raw scalar that was redacted whole."""
    secret = force or is_secret_name(name)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        out = redactor.tree(name, value, secret)
        if isinstance(out, str) and out != value and _DIGEST.fullmatch(out):
            whole.append((value if isinstance(value, str) else _scalar_text(value), out))
        return out
    if isinstance(value, list) and depth < MAX_DEPTH:
        return [_tree_noting(redactor, name, v, secret, whole, depth=depth + 1) for v in value]
    if isinstance(value, dict) and depth < MAX_DEPTH:
        return {
            redactor.text(k): _tree_noting(redactor, k, v, secret, whole, depth=depth + 1)
            for k, v in value.items()
        }
    return redactor.tree(name, value, secret)


def redact_facts(facts: Mapping[str, Fact], redactor: Redactor) -> dict[str, Fact]:
    """Every fact redacted (:func:`redact_fact`), keyed by its (redacted) key."""
    out: dict[str, Fact] = {}
    for fact in facts.values():
        redacted = redact_fact(fact, redactor)
        out[redacted.key] = redacted
    return out


def redact_collected(
    facts: Mapping[str, Fact], statuses: Mapping[str, SourceStatus], salt: str
) -> tuple[dict[str, Fact], dict[str, SourceStatus]]:
    """The central pass of ``agent.snapshot``: every fact of a snapshot, whatever its source, and
    every source's message, redacted before the snapshot is fingerprinted or leaves the agent."""
    redactor = Redactor(salt)
    out_statuses = {
        name: (s if redactor.text(s.message) == s.message else replace(s, message=redactor.text(s.message)))
        for name, s in statuses.items()
    }
    return redact_facts(facts, redactor), out_statuses
