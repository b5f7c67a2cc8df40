"""A stand-in OpenAI-compatible server for the probe's tests: it streams as the real engines do,
with latencies and failures the test sets.

What it serves follows the engines' own code (the references are in
:mod:`skewwatch.probe.client`'s docstring): ``POST /v1/chat/completions`` and
``/v1/completions``, streamed as SSE (``data: {json}\\n\\n`` events, ``data: [DONE]`` last); a
chat stream opens with vLLM's role chunk (``delta: {role: assistant, content: ""}``, no token),
carries ``choices[0].delta.content`` (chat) or ``choices[0].text`` (completions), sets
``finish_reason`` on the last content chunk, and sends a ``choices: []`` usage chunk before
``[DONE]`` when the request asks ``stream_options.include_usage`` (unless the behaviour says the
server never sends usage, like an older engine). Non-streamed answers are one JSON body with
``usage``. It rejects an unknown model (404) and, with ``api_key`` set, a missing or wrong bearer
key (401, echoing the key it was given, as a careless gateway might: the probe must redact it).

The test controls, per server (:class:`Behaviour`): the first-token delay, the delay between
chunks, tokens per response and per chunk, an error event mid-stream (vLLM's or TGI's shape), a
connection cut before ``[DONE]``, a status for every request (429 with ``Retry-After``), slower
first requests (to see warm-up excluded). It counts every request it receives and the most it
had in flight at once. It runs on its own event loop in a thread, on a free port, so the probe's
own ``asyncio.run`` can run beside it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.threaded import serve_in_thread

MODEL = "standin-model"


@dataclass
class Behaviour:
    """What the stand-in does; every latency is in seconds."""

    first_token_delay: float = 0.2
    token_delay: float = 0.02
    tokens: int | None = None  # tokens per answer; None: the request's max_tokens
    chunk_tokens: int = 1  # tokens per content chunk (more than one: a speculative-decoding server)
    usage: bool = True  # honours stream_options.include_usage (False: never sends usage)
    error_after: int | None = None  # an error event after this many tokens
    error_style: str = "vllm"  # vllm: {"error": {...}}; tgi: {"error": "...", "error_type": "..."}
    cut_after: int | None = None  # close the connection after this many tokens, without [DONE]
    status: int | None = None  # answer every request with this status
    retry_after: str = "3"
    slow_first: int = 0  # the first N requests wait slow_first_delay before their first token
    slow_first_delay: float = 1.0
    api_key: str | None = None


@dataclass
class Counts:
    """What the stand-in saw."""

    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)


def _error(status: int, message: str, kind: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status)


class Standin:
    """The server's handlers and state."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.counts = Counts()
        self._lock = threading.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.generate(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self.generate(request, "completions")

    async def generate(self, request: web.Request, api: str) -> web.StreamResponse:
        with self._lock:
            self.counts.requests += 1
            number = self.counts.requests
            self.counts.by_path[request.path] = self.counts.by_path.get(request.path, 0) + 1
            self.counts.in_flight += 1
            self.counts.max_in_flight = max(self.counts.max_in_flight, self.counts.in_flight)
            self.counts.authorization.append(request.headers.get("Authorization"))
        try:
            return await self._answer(request, api, number)
        finally:
            with self._lock:
                self.counts.in_flight -= 1

    async def _answer(self, request: web.Request, api: str, number: int) -> web.StreamResponse:
        b = self.b
        if b.api_key is not None:
            given = request.headers.get("Authorization", "")
            if given != f"Bearer {b.api_key}":
                return _error(401, f"invalid API key in header {given!r}", "AuthenticationError")
        body = await request.json()
        with self._lock:
            self.counts.bodies.append(body)
        if b.status is not None:
            headers = {"Retry-After": b.retry_after} if b.status == 429 else {}
            resp = _error(b.status, f"stand-in answers {b.status}", "ServiceUnavailableError")
            resp.headers.update(headers)
            return resp
        if body.get("model") != MODEL:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        prompt = body["messages"][-1]["content"] if api == "chat" else body["prompt"]
        prompt_tokens = len(str(prompt).split())
        n = b.tokens if b.tokens is not None else int(body.get("max_tokens") or 16)
        first = b.first_token_delay + (b.slow_first_delay if number <= b.slow_first else 0.0)
        if not body.get("stream"):
            await asyncio.sleep(first + b.token_delay * max(0, -(-n // b.chunk_tokens) - 1))
            return web.json_response(self._full(api, n, prompt_tokens))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and b.usage
        return await self._stream(request, api, n, prompt_tokens, first, include_usage)

    def _full(self, api: str, n: int, prompt_tokens: int) -> dict[str, Any]:
        text = " tok" * n
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length"}
        if api == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        doc: dict[str, Any] = {
            "id": "cmpl-standin",
            "object": "chat.completion",
            "model": MODEL,
            "choices": [choice],
        }
        if self.b.usage:
            doc["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": n,
                "total_tokens": prompt_tokens + n,
            }
        return doc

    @staticmethod
    def _chunk(api: str, text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if api == "chat":
            choice["delta"] = {"role": "assistant", "content": ""} if role else {"content": text}
        else:
            choice["text"] = text or ""
        obj = "chat.completion.chunk" if api == "chat" else "text_completion"
        return {
            "id": "chatcmpl-standin",
            "object": obj,
            "created": int(time.time()),
            "model": MODEL,
            "choices": [choice],
        }

    async def _stream(
        self, request: web.Request, api: str, n: int, prompt_tokens: int, first: float, include_usage: bool
    ) -> web.StreamResponse:
        b = self.b
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(doc: dict[str, Any] | str) -> None:
            data = doc if isinstance(doc, str) else json.dumps(doc)
            await resp.write(f"data: {data}\n\n".encode())

        if api == "chat":
            await send(self._chunk(api, None, None, role=True))  # vLLM's role chunk: no token yet
        await asyncio.sleep(first)
        sent = 0
        while sent < n:
            if sent:
                await asyncio.sleep(b.token_delay)
            if b.error_after is not None and sent >= b.error_after:
                await send(self._error_event())
                await send("[DONE]")
                return resp
            if b.cut_after is not None and sent >= b.cut_after:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-body: no [DONE]
                return resp
            k = min(b.chunk_tokens, n - sent)
            sent += k
            await send(self._chunk(api, " tok" * k, "length" if sent >= n else None))
        if include_usage:
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": n,
                "total_tokens": prompt_tokens + n,
            }
            await send(
                {
                    "id": "chatcmpl-standin",
                    "object": "chat.completion.chunk",
                    "model": MODEL,
                    "choices": [],
                    "usage": usage,
                }
            )
        await send("[DONE]")
        await resp.write_eof()
        return resp

    def _error_event(self) -> dict[str, Any]:
        if self.b.error_style == "tgi":
            return {"error": "Request failed during generation: out of memory", "error_type": "generation"}
        return {
            "error": {"message": "engine died mid-generation", "type": "InternalServerError", "code": 500}
        }


@contextmanager
def serve(behaviour: Behaviour | None = None) -> Iterator[tuple[str, Standin]]:
    """The stand-in on 127.0.0.1, a free port, its own loop in a thread: ``(base URL, server)``."""
    standin = Standin(behaviour or Behaviour())
    with serve_in_thread(standin.app(), "probe-standin") as url:
        yield url, standin
