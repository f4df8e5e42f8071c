"""A loopback port for a test server the product binds later by number (a connect's redirect
URI, a notification listener), chosen where nothing else takes it in between.

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same range it
draws from for every outgoing connection: closed after the probe, it can be any client's local
port by the time the product binds it (the reliability soak, five processes at once, met
``Address already in use`` on a connect's redirect port). Below that range only an explicit
bind takes a port, so a random one there, probed, stays free.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A free loopback port outside the ephemeral range (falling back to the kernel's pick)."""
    low = _ephemeral_low()
    for _ in range(50):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
