"""Where a web page is served: `[HOST:]PORT` parsed, the socket bound, the URL to print.

Standard library only, so that a command line can parse and bind `--serve` before it does
any work, and say "port in use" in one line, whether or not the web extra is installed.

    address = parse_address("8000")          # Address("127.0.0.1", 8000)
    sock = bind(address)                     # OSError: port in use, no such host, ...
    url(address, sock)                       # "http://127.0.0.1:8000/"

The default host is the loopback interface: a page on it is reached from another machine
only through an ssh port forward (`ssh -L 8000:127.0.0.1:8000 gpu-box`). "0.0.0.0" (or
"::") listens on every interface, when asked: anyone who reaches the machine can then watch
and stop the run, and browsers cannot open the address 0.0.0.0 itself.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket

DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True)
class Address:
    """A host (name or IP; "" never) and a port (0: any free port, chosen when bound)."""

    host: str
    port: int

    @property
    def everywhere(self) -> bool:
        """Listening on every interface ("0.0.0.0" or "::")."""
        return self.host in ("0.0.0.0", "::")

    @property
    def loopback(self) -> bool:
        """Reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    """`PORT`, `HOST:PORT` or `[IPV6]:PORT` -> Address; ValueError (one line) otherwise."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:8000")
    if not host:
        raise ValueError(f"{text!r}: empty host before ':' (give PORT alone for "
                         f"{DEFAULT_HOST})")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: expected [HOST:]PORT with PORT a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be 0-65535 (0: any free port)")
    return Address(host, port)


def bind(address: Address) -> socket.socket:
    """A listening TCP socket on `address`. OSError with a one-line message naming the
    address when it cannot be bound (in use, not this machine's, no such host, no
    permission)."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise OSError(f"cannot serve on {address.host}:{address.port}: unknown host "
                      f"({err.strerror})") from None
    family, kind, proto, _, where = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a new run take the port of one that just ended (TIME_WAIT); Linux still
        # refuses a port another socket listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address.host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(where)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise OSError(_bind_problem(address, err)) from None
    sock.setblocking(False)
    return sock


def _bind_problem(address: Address, err: OSError) -> str:
    where = f"{address.host}:{address.port}"
    if err.errno == errno.EADDRINUSE:
        return (f"cannot serve on {where}: the port is in use (another program, or another "
                "run's --serve); choose another port, or 0 for any free one")
    if err.errno == errno.EACCES:
        return f"cannot serve on {where}: permission denied (ports below 1024 need root)"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve on {where}: {address.host} is not an address of this machine"
    return f"cannot serve on {where}: {err.strerror or err}"


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def url(address: Address, sock: socket.socket) -> str:
    """The URL a browser opens: the bound port; for every interface, this machine's name."""
    host = socket.gethostname() if address.everywhere else address.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{bound_port(sock)}/"


def host_allowed(header: str | None, address: Address) -> bool:
    """Whether a request's Host header may reach a server bound to `address`: a server on
    the loopback interface answers only requests addressed to a loopback name (a page on
    another site that makes its browser's DNS point at 127.0.0.1 sends its own name:
    "DNS rebinding"). The port is not compared: an ssh forward may change it."""
    if not address.loopback:
        return True
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host in LOOPBACK_NAMES or host == address.host.lower()
