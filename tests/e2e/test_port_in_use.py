"""A gRPC port already in use refuses the start: a second collector never silently shares it.

gRPC sets SO_REUSEPORT by default, so before the fix a second ``skewwatch collector`` on the same
``--grpc`` port started and took some of the agents. Now it exits non-zero at once with one line
naming the address, and the first one keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from demo.harness import free_port, skewwatch
from tests.support.collector import AgentStream, hello_msg

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 30.0
REFUSE_WITHIN_S = 20.0


def start_collector(tmp_path: Path, name: str, grpc_port: int, http_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    argv = skewwatch("collector", "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
                     "--store", f"sqlite:///{tmp_path}/{name}.db")  # fmt: skip
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as r:
            return bool(r.status == 200 and json.loads(r.read())["status"] == "ready")
    except OSError:
        return False


async def say_hello(grpc_port: int) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        reply = await AgentStream(channel).exchange(hello_msg(1, pod="after-the-refusal"))
        return str(reply.WhichOneof("body"))


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_second_collector_on_a_used_grpc_port_exits_and_the_first_keeps_serving(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    first = start_collector(tmp_path, "first", grpc_port, http_port)
    second: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(http_port):
            assert first.poll() is None, first.communicate(timeout=5)
            assert time.monotonic() < deadline, "the first collector never became ready"
            time.sleep(0.1)

        started = time.monotonic()
        second = start_collector(tmp_path, "second", grpc_port, free_port())
        _, err = second.communicate(timeout=REFUSE_WITHIN_S)
        took = time.monotonic() - started
        assert second.returncode != 0, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"skewwatch collector: error: --grpc: cannot listen on 127.0.0.1:{grpc_port}")
        assert "address already in use" in last
        assert "Traceback" not in err
        print(f"\nsecond collector refused in {took:.1f} s, exit code {second.returncode}")

        assert first.poll() is None, "the first collector must keep running"
        assert ready(http_port)
        assert asyncio.run(say_hello(grpc_port)) == "ack"
    finally:
        if second is not None:
            stop(second)
        stop(first)
