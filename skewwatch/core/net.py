"""Network address rules shared by the agent and the collector."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as in ``HOST:PORT``) names only this machine: 127.0.0.0/8, ::1 or
    ``localhost``. A name or an empty host (all interfaces) is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
