"""llama.cpp RPC endpoints (``HOST:PORT``): checked before llama.cpp sees them.

llama.cpp aborts the whole process when it cannot parse an endpoint or connect to it, and waits
for ever on a server that accepts the connection and never answers its hello (one busy with
another client does exactly that: it serves one client at a time). So an endpoint is parsed here,
connected to here with a timeout before a load, and registered in the engine under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
from dataclasses import dataclass

CONNECT_TIMEOUT_S = 3.0
"""How long a TCP connect to an RPC server may take before it counts as unreachable."""

HELLO_TIMEOUT_S = 10.0
"""How long llama.cpp may take to register an RPC server (connect, hello, device query) before
the server counts as not answering."""

_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")


class EndpointError(ValueError):
    """An endpoint that is not ``HOST:PORT``; ``str()`` is one line naming the problem."""


@dataclass(frozen=True)
class Endpoint:
    """A parsed RPC endpoint: a host name or address, and a TCP port (1-65535)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``HOST:PORT`` as an ``Endpoint``; HOST a name or an IPv4 address.

    Raises ``EndpointError`` for a missing host or port, a port outside 1-65535, a URL, spaces,
    characters no host name has, or an IPv6 address (llama.cpp cannot parse one).
    """
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise EndpointError(f"RPC server must be HOST:PORT: {text!r}")
    if ":" in host or host.startswith("["):
        # llama.cpp splits an endpoint at its first colon: it cannot take an IPv6 address.
        raise EndpointError(
            f"llama.cpp's RPC takes a host name or IPv4 address, not IPv6: {text!r}"
        )
    if not _HOST_NAME.match(host):
        raise EndpointError(f"not a host name or address: {host!r} in {text!r}")
    if not port_text.isdigit():
        raise EndpointError(f"RPC server port must be a number: {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"RPC server port must be 1-65535, not {port}: {text!r}")
    return Endpoint(host, port)


async def unreachable_reason(endpoint: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Connect to an RPC server over TCP and hang up: None when it accepts, else one line,
    "cannot reach the RPC server at HOST:PORT (why)". Does not speak llama.cpp's protocol (its
    hello changes between versions); a server that accepts and never answers is caught by the
    engine's registration deadline (``HELLO_TIMEOUT_S``)."""
    try:
        parsed = parse_endpoint(endpoint)
    except EndpointError as exc:
        return str(exc)
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parsed.host, parsed.port), timeout_s
        )
    except asyncio.TimeoutError:
        why = f"no answer to a connection in {timeout_s:g} s"
    except socket.gaierror as exc:
        why = f"unknown host: {exc.strerror or exc}"
    except OSError as exc:
        why = _errno_text(exc)
    else:
        writer.close()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout_s)
        return None
    return f"cannot reach the RPC server at {parsed} ({why})"


def port_taken_reason(host: str, port: int) -> str | None:
    """Whether an RPC server could listen on ``host:port``: None, or one line saying why not
    (taken by another process, no such address here, not allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot listen on {host}:{port}: unknown host ({exc.strerror or exc})"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # llama.cpp's server sets SO_REUSEADDR too: a port left in TIME_WAIT is not "taken".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is taken by another process"
            return f"cannot listen on {host}:{port} ({_errno_text(exc)})"
    return None


def _errno_text(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused: is the RPC server running on that port?"
    return (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)
