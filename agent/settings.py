"""Agent settings: one documented dataclass; every field has a flag and a SKEWWATCH_* variable.

| field            | flag              | variable                    | default        |
|------------------|-------------------|-----------------------------|----------------|
| collector        | --collector       | SKEWWATCH_COLLECTOR         | none (facts)   |
| pid              | --pid             | SKEWWATCH_PID               | none           |
| match            | --match           | SKEWWATCH_MATCH             | none: any vLLM, SGLang or TGI process |
| metrics_url      | --metrics-url     | SKEWWATCH_METRICS_URL       | from the process's --port |
| model_dir        | --model-dir       | SKEWWATCH_MODEL_DIR         | from the process's --model |
| interval_s       | --interval        | SKEWWATCH_INTERVAL          | 15 s           |
| source_timeout_s | --source-timeout  | SKEWWATCH_SOURCE_TIMEOUT    | 10 s           |
| redaction_salt   | (none)            | SKEWWATCH_REDACTION_SALT    | built-in salt  |
| agent_id         | --agent-id        | SKEWWATCH_AGENT_ID          | namespace/pod  |
| hash_mode        | --hash-mode       | SKEWWATCH_HASH_MODE         | sha256 (= sha256sum); or blake3 |
| hash_threads     | --hash-threads    | SKEWWATCH_HASH_THREADS      | min(4, usable cores) |
| hash_nice        | --hash-nice       | SKEWWATCH_HASH_NICE         | 10 (added to the hash threads) |
| hash_ionice      | --hash-ionice     | SKEWWATCH_HASH_IONICE       | best-effort:7 (none, idle, …:N) |
| hash_bytes_per_s | --hash-bytes-per-s| SKEWWATCH_HASH_BYTES_PER_S  | 0 = unlimited (e.g. 200M, 1GiB) |
| hash_cache_dir   | --hash-cache-dir  | SKEWWATCH_HASH_CACHE_DIR    | $TMPDIR/skewwatch-<uid> |
| hash_wait_s      | --hash-wait       | SKEWWATCH_HASH_WAIT         | 0.25 s (agent loop); 8 s (`facts`) |
| settle_s         | --settle          | SKEWWATCH_SETTLE            | 120 s (after a restart) |
| watch_interval_s | --watch-interval  | SKEWWATCH_WATCH_INTERVAL    | 0.25 s (0: off) |
| tls_ca_file      | --tls-ca          | SKEWWATCH_TLS_CA            | none: plaintext, loopback only |
| tls_cert_file    | --tls-cert        | SKEWWATCH_TLS_CERT          | none (no client certificate) |
| tls_key_file     | --tls-key         | SKEWWATCH_TLS_KEY           | none           |
| tls_server_name  | --tls-server-name | SKEWWATCH_TLS_SERVER_NAME   | the --collector host |
| token_file       | --token-file      | SKEWWATCH_TOKEN_FILE        | none (no bearer token) |
| insecure         | --insecure        | SKEWWATCH_INSECURE          | false          |
| outbox_file      | --outbox-file     | SKEWWATCH_OUTBOX_FILE       | none (memory only) |
| outbox_max_messages | --outbox-max-messages | SKEWWATCH_OUTBOX_MAX_MESSAGES | 256 |
| outbox_max_bytes | --outbox-max-bytes | SKEWWATCH_OUTBOX_MAX_BYTES | 32 MiB         |

Transport (docs/security.md): with ``tls_ca_file`` the agent speaks TLS to the collector and
checks its certificate against that CA (``tls_server_name`` when the certificate names another
host than ``collector``); with ``tls_cert_file``/``tls_key_file`` it presents a client certificate
(mutual TLS); with ``token_file`` each stream carries ``authorization: Bearer <token>``. The files
are re-read at every reconnect, and a change of them makes the agent reconnect. Plaintext goes
only to a loopback collector, or anywhere with ``insecure``.

Outbox (docs/security.md): messages not yet acknowledged wait in a bounded outbox and are resent
in order after a reconnect; with ``outbox_file`` (in an ``emptyDir``) they survive an agent
restart too. Past ``outbox_max_messages`` or ``outbox_max_bytes`` the oldest superseded snapshot is
dropped first, and the drop is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.errors import SettingsError
from agent.hashing import MODES, HashBudget
from skewwatch.core.net import is_loopback
from skewwatch.redact import DEFAULT_SALT

_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})$")


@dataclass(frozen=True)
class AgentSettings:
    collector: str | None = None
    pid: int | None = None
    match: str | None = None
    metrics_url: str | None = None
    model_dir: Path | None = None
    interval_s: float = 15.0
    source_timeout_s: float = 10.0
    redaction_salt: str = DEFAULT_SALT
    agent_id: str | None = None
    hash_mode: str = "sha256"
    hash_threads: int | None = None  # None: min(4, usable cores)
    hash_nice: int = 10
    hash_ionice: str = "best-effort:7"
    hash_bytes_per_s: int = 0
    hash_cache_dir: Path | None = None
    hash_wait_s: float = 0.25  # small models arrive whole in the first snapshot; big ones pending
    settle_s: float = 120.0  # see agent.lifecycle: a restart is one snapshot once sources are back
    # Between collections, how often the agent looks whether its engine ended or was replaced
    # (agent.runtime): a restart is collected at once, not at the next --interval tick. 0: off.
    watch_interval_s: float = 0.25
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_server_name: str | None = None
    token_file: Path | None = None
    insecure: bool = False
    outbox_file: Path | None = None
    outbox_max_messages: int = 256
    outbox_max_bytes: int = 32 * 1024 * 1024

    @property
    def tls(self) -> bool:
        """Whether the agent speaks TLS to the collector."""
        return self.tls_ca_file is not None

    def validate(self) -> AgentSettings:
        """Return self when every field is valid, else raise SettingsError naming the field."""
        if self.collector is not None:
            check_hostport(self.collector, "--collector")
        if self.pid is not None and self.pid <= 0:
            raise SettingsError(f"--pid: must be a positive process id, got {self.pid}")
        if self.match is not None:
            try:
                re.compile(self.match)
            except re.error as e:
                raise SettingsError(f"--match: invalid regular expression {self.match!r}: {e}") from e
        if self.metrics_url is not None and not re.match(r"^https?://", self.metrics_url):
            raise SettingsError(f"--metrics-url: must be an http(s) URL, got {self.metrics_url!r}")
        if not 0.05 <= self.interval_s <= 86_400:
            raise SettingsError(f"--interval: must be between 0.05 and 86400 seconds, got {self.interval_s}")
        if not 0.01 <= self.source_timeout_s <= 3_600:
            raise SettingsError(
                f"--source-timeout: must be between 0.01 and 3600 s, got {self.source_timeout_s}"
            )
        if self.watch_interval_s != 0 and not 0.01 <= self.watch_interval_s <= 3_600:
            raise SettingsError(
                f"--watch-interval: must be 0 (off) or between 0.01 and 3600 s, got {self.watch_interval_s}"
            )
        self._validate_hashing()
        self._validate_transport()
        return self

    def _validate_transport(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("--tls-cert: --tls-cert and --tls-key go together")
        if self.tls_cert_file is not None and self.tls_ca_file is None:
            raise SettingsError("--tls-cert: a client certificate needs TLS: give --tls-ca too")
        # The files themselves are not checked here: they come from a Secret the kubelet may
        # mount after the agent started (an optional volume fills in once the Secret exists), and
        # agent.transport reads them at every connect, saying which one it cannot use. An agent
        # that exited instead would crash-loop beside an engine it could watch as soon as they come.
        if self.collector is not None and not self.tls and not self.insecure:
            host, _ = check_hostport(self.collector, "--collector")
            if not is_loopback(host):
                raise SettingsError(
                    f"--collector: plaintext to {self.collector}, which is not a loopback address: give "
                    "--tls-ca (the CA that signed the collector's certificate), or --insecure on purpose"
                )
        if self.token_file is not None and not self.tls and not self.insecure:
            raise SettingsError(
                "--token-file: a bearer token is sent only over TLS: give --tls-ca, or --insecure"
            )
        if not 1 <= self.outbox_max_messages <= 100_000:
            raise SettingsError(
                f"--outbox-max-messages: must be between 1 and 100000, got {self.outbox_max_messages}"
            )
        if not 64 * 1024 <= self.outbox_max_bytes <= 4 * 1024**3:
            raise SettingsError(
                f"--outbox-max-bytes: must be between 64 KiB and 4 GiB, got {self.outbox_max_bytes}"
            )

    def _validate_hashing(self) -> None:
        if self.hash_mode not in MODES:
            raise SettingsError(f"--hash-mode: expected one of {', '.join(MODES)}, got {self.hash_mode!r}")
        HashBudget(
            threads=self.hash_threads or 1,
            nice=self.hash_nice,
            ionice=self.hash_ionice,
            bytes_per_s=self.hash_bytes_per_s,
        ).validate()
        if not 0 <= self.settle_s <= 86_400:
            raise SettingsError(f"--settle: must be between 0 and 86400 s, got {self.settle_s}")
        if not 0 <= self.hash_wait_s <= 3_600:
            raise SettingsError(f"--hash-wait: must be between 0 and 3600 s, got {self.hash_wait_s}")


def check_hostport(value: str, flag: str) -> tuple[str, int]:
    m = _HOSTPORT.match(value)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise SettingsError(f"{flag}: expected HOST:PORT, got {value!r}")
    return m.group(1).strip("[]"), int(m.group(2))


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value not in (None, "") else None


def env_float(environ: Mapping[str, str], name: str) -> float | None:
    raw = env_value(environ, name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: expected a number, got {raw!r}") from e


def env_int(environ: Mapping[str, str], name: str) -> int | None:
    raw = env_value(environ, name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError as e:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from e
