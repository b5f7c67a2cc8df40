"""The probe's HTTP client: one OpenAI-compatible request, streamed or not, timed as it arrives.

One :class:`ProbeClient` holds one aiohttp session (a connection pool of ``max_connections``)
and sends each planned request once: **no retries**, ever (a 429 or a 5xx is counted and
reported, with its ``Retry-After``; a retried request would add load the probe did not plan and
hide what the server said). aiohttp itself resends a request on a dropped kept-alive connection
only for idempotent methods (``IDEMPOTENT_METHODS`` in ``aiohttp/client.py``), never a POST.
Every request has a connect
timeout, a read timeout (between two reads of the body) and a total timeout.

What it measures, per request, on ``time.perf_counter``:

- **TTFT**: from just before the request is handed to the session to the arrival of the first
  chunk that carries generated text (``choices[0].delta.content`` — or a reasoning model's
  ``delta.reasoning_content`` / ``delta.reasoning`` — for chat, ``choices[0].text`` for
  completions). vLLM's first chat chunk carries only the role with ``content: ""``; it is not a
  token and does not stop the clock.
- **ITL**: the gaps between successive content chunks (a chunk can hold more than one token:
  speculative decoding, stream intervals; the gaps are what a client sees).
- **end-to-end**: from the same start to ``data: [DONE]`` (or the whole JSON body).
- **tokens**: ``usage.completion_tokens`` where the server sends usage (the final usage chunk
  that ``stream_options.include_usage`` asks for, which the probe always asks for; the last one
  wins when vLLM's ``continuous_usage_stats`` puts usage on every chunk), else the content
  chunks counted; ``token_source`` says which (``usage`` | ``chunks`` | ``none``).
- **connection pool wait** and **connect time**, from aiohttp's ``TraceConfig`` signals: how long
  the request queued for a free connection of the pool, and how long a new connection took to
  set up. A pool wait is the client's own limit, reported as client saturation, not server time.

Failures are sorted into kinds: ``http_429``, ``http_5xx``, ``http_4xx``, ``timeout``,
``connect`` (refused, unresolvable, connect timeout), ``stream_error`` (an error event in the
stream, a connection cut mid-body, a stream that ends without ``[DONE]``) and ``bad_response``
(not JSON, no choices, no generated text).

The stream shapes this parser follows, as the engines write them:

- vLLM (``vllm/entrypoints/openai/chat_completion/serving.py``,
  ``chat_completion_stream_generator``): ``data: {json}\\n\\n`` events; the first chunk per
  choice is ``delta: {role, content: ""}``; with ``stream_options.include_usage`` a last chunk
  with ``choices: []`` and ``usage`` comes before ``data: [DONE]``; with
  ``continuous_usage_stats`` every chunk carries ``usage``; an exception mid-stream is sent as
  ``data: {"error": {"message", "type", "code"}}`` followed by ``data: [DONE]``
  (``create_streaming_error_response`` in ``vllm/entrypoints/openai/engine/serving.py``).
  Completions (``completion/serving.py``) stream ``choices[0].text`` the same way.
- SGLang (``python/sglang/srt/entrypoints/openai/serving_chat.py`` and ``usage_processor.py``,
  ``calculate_streaming_usage``): the same framing, usage chunk and ``{"error": {...}}`` event.
- TGI (``router/src/chat.rs``, ``ChatState::push``; ``router/src/server.rs``,
  ``impl From<InferError> for Event``): one chunk per token with ``delta.content``; with
  ``include_usage`` a chunk with ``choices: []`` and ``usage`` after the one carrying
  ``finish_reason``; an error event is ``data: {"error": "text", "error_type": "…"}`` (a string,
  not an object); ``Overloaded`` answers 429.

The API key is sent as ``Authorization: Bearer`` and never appears in what this module returns:
every detail that came from the network goes through :meth:`ApiKey.redact`.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import aiohttp

from skewwatch.core.net import is_loopback
from skewwatch.probe.plan import Api, PlannedRequest, ProbeUsageError

ErrorKind = Literal["http_429", "http_5xx", "http_4xx", "timeout", "connect", "stream_error", "bad_response"]
ERROR_KINDS: tuple[ErrorKind, ...] = (
    "http_429", "http_5xx", "http_4xx", "timeout", "connect", "stream_error", "bad_response",
)  # fmt: skip
TokenSource = Literal["usage", "chunks", "none"]

API_KEY_FILE_ENV = "SKEWWATCH_PROBE_API_KEY_FILE"
API_KEY_ENVS = ("SKEWWATCH_PROBE_API_KEY", "OPENAI_API_KEY")
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_EVENT_BYTES = 1024 * 1024  # one SSE event; a bigger one is a bad response, not a memory sink
MAX_BODY_BYTES = 8 * 1024 * 1024  # a non-streamed answer
MAX_ERROR_BODY_BYTES = 16 * 1024
MAX_DETAIL_CHARS = 300
PATHS: Mapping[Api, str] = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
REDACTED = "<redacted>"


# --- the API key ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    """The bearer key and where it came from; its repr and every redaction hide the value."""

    value: str = field(repr=False)
    source: str

    def __repr__(self) -> str:
        return f"ApiKey(source={self.source!r})"

    def redact(self, text: str) -> str:
        return text.replace(self.value, REDACTED) if self.value else text


def read_api_key(path: Path | None, env: Mapping[str, str]) -> ApiKey | None:
    """``--api-key-file`` (else ``$SKEWWATCH_PROBE_API_KEY_FILE``), else ``$SKEWWATCH_PROBE_API_KEY``,
    else ``$OPENAI_API_KEY``, else None; ProbeUsageError naming the source (never the key)."""
    if path is None and env.get(API_KEY_FILE_ENV):
        path = Path(env[API_KEY_FILE_ENV])
    if path is not None:
        where = f"API key file {path}"
        try:
            with path.open("rb") as f:
                data = f.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as e:
            raise ProbeUsageError(f"{where}: cannot read: {e.strerror or e}") from None
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ProbeUsageError(f"{where}: over {MAX_KEY_FILE_BYTES} bytes, not a key")
        return ApiKey(_checked(data.decode("utf-8", "replace").strip(), where), where)
    for name in API_KEY_ENVS:
        value = env.get(name)
        if value:
            return ApiKey(_checked(value.strip(), f"${name}"), f"${name}")
    return None


def _checked(key: str, where: str) -> str:
    if not key or not all("\x21" <= c <= "\x7e" for c in key):
        raise ProbeUsageError(f"{where}: not a key (one line of printable ASCII without spaces)")
    return key


def plaintext_warning(endpoint: str, key: ApiKey | None) -> str | None:
    """A warning when a key would cross the network in clear (http:// off loopback), else None."""
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname or ""
    if key is None or parts.scheme != "http" or is_loopback(host):
        return None
    return f"sending the API key ({key.source}) to {host} over plain HTTP; use an https:// --endpoint"


def endpoint_url(value: str) -> str:
    """The server's base URL (``http://host:8000``; a trailing ``/v1`` is accepted and dropped)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeUsageError(f"--endpoint must be an http(s) URL like http://HOST:8000, got {value!r}")
    if parts.username or parts.password:
        raise ProbeUsageError("--endpoint must not carry credentials; give the key with --api-key-file")
    base = value.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


# --- what comes back ------------------------------------------------------------------------------


@dataclass
class RequestResult:
    """One request, as measured (times in seconds on ``time.perf_counter``)."""

    index: int
    warmup: bool
    prompt_id: str
    start: float
    end: float = 0.0
    error: ErrorKind | None = None
    detail: str = ""
    status: int | None = None
    retry_after: str | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    content_chunks: int = 0
    completion_tokens: int = 0
    prompt_tokens: int | None = None
    token_source: TokenSource = "none"  # noqa: S105 (how tokens were counted, not a secret)
    pool_wait: float = 0.0
    connect: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def e2e(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Chunk:
    """What one stream event says: generated text, usage counts, or an error."""

    text: str = ""
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    error: str | None = None


class BadChunk(ValueError):
    """A stream event that is not an OpenAI chunk (not JSON, not an object, no choices)."""


class SseParser:
    """Server-sent events from bytes as they arrive: the ``data`` of each complete event.

    Lines end in LF or CRLF; a blank line ends an event; its ``data:`` lines are joined with LF;
    comments (``:``) and other fields (``event:``, ``id:``, ``retry:``) are skipped. An event
    over ``max_event_bytes`` raises BadChunk (bounded memory whatever the server sends).
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[str]:
        self._buf.extend(chunk)
        events: list[str] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                self._data, self._size = [], 0
                continue
            if line.startswith(b"data:"):
                value = line[5:]
                value = value[1:] if value.startswith(b" ") else value
                self._size += len(value)
                self._data.append(value.decode("utf-8", "replace"))
        if self._size + len(self._buf) > self._max:
            raise BadChunk(f"an SSE event over {self._max} bytes")
        return events


def interpret(data: str, api: Api) -> Chunk:
    """One event's JSON as the engines write it (see the module docstring); BadChunk otherwise."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise BadChunk(f"an event that is not JSON: {_short(data)}") from e
    if not isinstance(doc, dict):
        raise BadChunk(f"an event that is not a JSON object: {_short(data)}")
    if "error" in doc or doc.get("object") == "error":
        return Chunk(error=_error_text(doc))
    completion, prompt = _usage(doc.get("usage"))
    choices = doc.get("choices")
    if not isinstance(choices, list):
        raise BadChunk(f"a chunk without a choices list: {_short(data)}")
    text = _choice_text(choices[0], api, delta=True) if choices else ""
    return Chunk(text, completion, prompt)


def _choice_text(choice: object, api: Api, *, delta: bool) -> str:
    if not isinstance(choice, dict):
        raise BadChunk("a choice that is not an object")
    if api == "completions":
        text = choice.get("text")
        return text if isinstance(text, str) else ""
    message = choice.get("delta" if delta else "message")
    if not isinstance(message, dict):
        return ""
    for key in ("content", "reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(usage: object) -> tuple[int | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    return (
        completion if isinstance(completion, int) and not isinstance(completion, bool) else None,
        prompt if isinstance(prompt, int) and not isinstance(prompt, bool) else None,
    )


def _error_text(doc: Mapping[str, Any]) -> str:
    err = doc.get("error")
    if isinstance(err, dict):  # vLLM, SGLang: {"error": {"message", "type", "code"}}
        parts = [str(err.get(k)) for k in ("type", "code", "message") if err.get(k) not in (None, "")]
        return _short(": ".join(parts) or json.dumps(err))
    if isinstance(err, str):  # TGI: {"error": "…", "error_type": "…"}
        kind = doc.get("error_type")
        return _short(f"{kind}: {err}" if kind else err)
    return _short(str(doc.get("message") or json.dumps(doc)))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


# --- the client -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 60.0
    request_s: float = 300.0


class _Trace:
    """Per-request TraceConfig context: when the request queued for and got its connection."""

    def __init__(self) -> None:
        self.queued_at: float | None = None
        self.pool_wait = 0.0
        self.create_at: float | None = None
        self.connect: float | None = None


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    def ctx(params: SimpleNamespace) -> _Trace | None:
        value = getattr(params, "trace_request_ctx", None)
        return value if isinstance(value, _Trace) else None

    async def queued_start(_s: aiohttp.ClientSession, p: SimpleNamespace, _e: object) -> None:
        t = ctx(p)
        if t is not None:
            t.queued_at = time.perf_counter()

    async def queued_end(_s: aiohttp.ClientSession, p: SimpleNamespace, _e: object) -> None:
        t = ctx(p)
        if t is not None and t.queued_at is not None:
            t.pool_wait += time.perf_counter() - t.queued_at

    async def create_start(_s: aiohttp.ClientSession, p: SimpleNamespace, _e: object) -> None:
        t = ctx(p)
        if t is not None:
            t.create_at = time.perf_counter()

    async def create_end(_s: aiohttp.ClientSession, p: SimpleNamespace, _e: object) -> None:
        t = ctx(p)
        if t is not None and t.create_at is not None:
            t.connect = time.perf_counter() - t.create_at

    tc.on_connection_queued_start.append(queued_start)
    tc.on_connection_queued_end.append(queued_end)
    tc.on_connection_create_start.append(create_start)
    tc.on_connection_create_end.append(create_end)
    return tc


class ProbeClient:
    """Sends planned requests to one endpoint and model; use as ``async with``."""

    def __init__(
        self,
        endpoint: str,
        model: str,
        api: Api,
        *,
        stream: bool,
        max_tokens: int,
        temperature: float,
        ignore_eos: bool,
        key: ApiKey | None,
        timeouts: Timeouts,
        max_connections: int,
    ) -> None:
        self.endpoint = endpoint
        self.url = endpoint + PATHS[api]
        self.model = model
        self.api: Api = api
        self.stream = stream
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.ignore_eos = ignore_eos
        self.key = key
        self.timeouts = timeouts
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ProbeClient:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
        headers = {"Authorization": f"Bearer {self.key.value}"} if self.key else {}
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=self.timeouts.request_s,
                sock_connect=self.timeouts.connect_s,
                sock_read=self.timeouts.read_s,
            ),
            trace_configs=[_trace_config()],
            trust_env=False,  # a proxy from the environment would measure the proxy
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ProbeClient used outside 'async with'")
        return self._session

    def body(self, req: PlannedRequest) -> dict[str, Any]:
        """The JSON body of one request (the same for every run of the same plan)."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": req.seed,
            "stream": self.stream,
        }
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": req.prompt.text}]
        else:
            body["prompt"] = req.prompt.text
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body

    async def reachable(self, within_s: float) -> str | None:
        """None when the endpoint answers HTTP at all (``GET /v1/models``, any status) within
        ``within_s`` (and the connect and read timeouts), else why not."""
        try:
            async with self.session.get(
                self.endpoint + "/v1/models",
                timeout=aiohttp.ClientTimeout(
                    total=min(within_s, self.timeouts.connect_s + self.timeouts.read_s),
                    sock_connect=self.timeouts.connect_s,
                ),
                allow_redirects=False,
            ) as resp:
                await resp.content.read(MAX_ERROR_BODY_BYTES)
                return None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            return self._redact(f"cannot connect to {self.endpoint}: {e}")
        except (TimeoutError, aiohttp.ClientError) as e:
            return self._redact(f"{self.endpoint} did not answer GET /v1/models: {type(e).__name__}: {e}")

    async def send(self, req: PlannedRequest) -> RequestResult:
        """Send one request once and measure it; failures are in the result, never raised."""
        trace = _Trace()
        result = RequestResult(req.index, req.warmup, req.prompt.id, start=time.perf_counter())
        headers_seen = False
        try:
            async with self.session.post(
                self.url, json=self.body(req), trace_request_ctx=trace, allow_redirects=False
            ) as resp:
                headers_seen = True
                result.status = resp.status
                if resp.status != 200:
                    await self._http_error(resp, result)
                elif self.stream:
                    await self._read_stream(resp, result)
                else:
                    await self._read_json(resp, result)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            self._fail(result, "connect", f"{type(e).__name__}: {e}")
        except TimeoutError as e:  # sock_read, total, and aiohttp's ServerTimeoutError
            self._fail(result, "timeout", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            kind: ErrorKind = "stream_error" if headers_seen else "connect"
            self._fail(result, kind, f"{type(e).__name__}: {e}")
        except aiohttp.ClientError as e:
            self._fail(result, "bad_response", f"{type(e).__name__}: {e}")
        except BadChunk as e:
            self._fail(result, "bad_response", str(e))
        result.end = result.end or time.perf_counter()
        result.pool_wait = trace.pool_wait
        result.connect = trace.connect
        return result

    def _redact(self, text: str) -> str:
        text = _short(text)
        return self.key.redact(text) if self.key else text

    def _fail(self, result: RequestResult, kind: ErrorKind, detail: str) -> None:
        result.error = kind
        result.detail = self._redact(detail)
        result.end = time.perf_counter()

    async def _http_error(self, resp: aiohttp.ClientResponse, result: RequestResult) -> None:
        raw = await resp.content.read(MAX_ERROR_BODY_BYTES)
        text = raw.decode("utf-8", "replace")
        try:
            doc = json.loads(text)
            text = _error_text(doc) if isinstance(doc, dict) else text
        except ValueError:
            pass
        status = resp.status
        kind: ErrorKind = "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
        result.retry_after = resp.headers.get("Retry-After")
        self._fail(result, kind, f"HTTP {status}: {text}" if text.strip() else f"HTTP {status}")

    async def _read_stream(self, resp: aiohttp.ClientResponse, result: RequestResult) -> None:
        parser = SseParser()
        last: float | None = None
        done = False
        usage_tokens: int | None = None
        async for raw in resp.content.iter_any():
            now = time.perf_counter()
            for data in parser.feed(raw):
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = interpret(data, self.api)
                if chunk.error is not None:
                    self._fail(result, "stream_error", f"error event after {result.content_chunks} "
                               f"content chunk(s): {chunk.error}")  # fmt: skip
                    return
                if chunk.completion_tokens is not None:
                    usage_tokens = chunk.completion_tokens  # the last usage seen is the whole request's
                if chunk.prompt_tokens is not None:
                    result.prompt_tokens = chunk.prompt_tokens
                if chunk.text:
                    if last is None:
                        result.ttft = now - result.start
                    else:
                        result.itl.append(now - last)
                    last = now
                    result.content_chunks += 1
            if done:
                result.end = time.perf_counter()
                # Read the body's end (the chunked terminator that follows [DONE]) so the pool
                # keeps the connection: a real client reuses it, and a new one would add connect time.
                await resp.content.read(MAX_ERROR_BODY_BYTES)
                break
        result.end = result.end or time.perf_counter()
        if not done:
            self._fail(result, "stream_error", f"the stream ended without [DONE] after "
                       f"{result.content_chunks} content chunk(s)")  # fmt: skip
        elif result.content_chunks == 0:
            self._fail(result, "bad_response", "the stream carried no generated text")
        elif usage_tokens is not None:
            result.completion_tokens, result.token_source = usage_tokens, "usage"
        else:
            result.completion_tokens, result.token_source = result.content_chunks, "chunks"

    async def _read_json(self, resp: aiohttp.ClientResponse, result: RequestResult) -> None:
        raw = await resp.content.read(MAX_BODY_BYTES + 1)
        result.end = time.perf_counter()
        if len(raw) > MAX_BODY_BYTES:
            raise BadChunk(f"an answer over {MAX_BODY_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise BadChunk(f"an answer that is not JSON: {_short(raw.decode('utf-8', 'replace'))}") from e
        if not isinstance(doc, dict):
            raise BadChunk("an answer that is not a JSON object")
        if "error" in doc:
            raise BadChunk(f"an error answer with status 200: {_error_text(doc)}")
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices:
            raise BadChunk("an answer without choices")
        text = _choice_text(choices[0], self.api, delta=False)
        if not text:
            raise BadChunk("an answer with no generated text")
        completion, prompt = _usage(doc.get("usage"))
        result.prompt_tokens = prompt
        if completion is not None:
            result.completion_tokens, result.token_source = completion, "usage"
