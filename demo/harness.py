"""Running skewwatch's processes for real: the demo's and the end-to-end tests' harness.

Children are started each in its own session (so each stops with its children), logged to a file
per child, and polled until ready; none of this is part of the product.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback TCP port free right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lasting_port(rng: random.Random | None = None) -> int:
    """A loopback TCP port free right now and outside the kernel's ephemeral range, for a server
    restarted on the same port many times: a port from ``free_port`` is an ephemeral one, which
    any outgoing connection may be handed as its own while the server is down (then the restart
    fails with "address already in use")."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = rng or random.Random()  # noqa: S311 - a port, not a secret
    for _ in range(200):
        port = rng.randrange(10_000, max(10_001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class Processes:
    """Every child started, each in its own session so it can be stopped with its children."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.children.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.children):
            self.stop(name)

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{tail}")


def get_json(url: str) -> Any:
    """GET a loopback URL and decode its JSON body."""
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback URL built here
        return json.load(resp)


def wait_for(what: str, check: Callable[[], bool], procs: Processes, timeout_s: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail early if a child of ``procs`` has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            if check():
                return
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
            pass  # not up yet: poll again
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


def skewwatch(*args: str) -> list[str]:
    """The command line that runs skewwatch's CLI (``collector``, ``agent``, …) in this interpreter."""
    return [sys.executable, "-m", "skewwatch.cli", *args]
