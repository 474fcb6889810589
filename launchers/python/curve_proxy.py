"""CurveZMQ proxy in front of a kernel that cannot be a CurveZMQ server itself (launcher protocol v2).

IRkernel binds its five ZMQ sockets on 127.0.0.1 only; this proxy exposes them on the
container's reachable address, inside the port range, as CurveZMQ servers:

* shell, control, stdin, hb: front ROUTER (CURVE server) <-> back DEALER connected to the
  kernel's loopback port. Frames pass unchanged both ways (the front ROUTER adds and strips
  the client's routing id, as in any ROUTER/DEALER broker). Every back DEALER has the same
  identity (``yg-proxy``): the kernel addresses a stdin ``input_request`` to the identities
  of the shell request it belongs to, so the shell and stdin DEALERs must share it;
* iopub: front XPUB (CURVE server) <-> back XSUB connected to the kernel's PUB:
  subscriptions travel up (every one, ``XPUB_VERBOSE``), messages down.

Bounds on every front socket: ``ZMQ_MAXMSGSIZE`` (a larger message drops that peer only),
SNDHWM/RCVHWM 1000, LINGER 0, ``ZMQ_HANDSHAKE_IVL`` 10 s (a peer that does not finish the
CurveZMQ handshake in time is dropped); back sockets LINGER 0.

The key pair comes from libzmq (``zmq.curve_keypair()``) and lives in this object only: it
is never logged or written anywhere; only the public half is handed out. Each channel runs
``zmq.proxy_steerable`` (libzmq's own proxy loop, without the GIL) in a thread of its own;
:meth:`CurveProxy.close` stops them, closes every socket (and so every file descriptor) and
terminates the context. Message contents are never logged.

Runs in the container's Python: standard library and pyzmq, plus ``launcher_protocol.py``
next to this file.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from typing import Any, Optional

import zmq

try:  # installed as the package yarn_gateway_launchers
    from . import launcher_protocol as lp
except ImportError:  # shipped as plain files into the container
    import launcher_protocol as lp  # type: ignore[no-redef]

log = logging.getLogger("yarn_gateway.curve_proxy")

#: connection_info port name -> (front socket type, back socket type)
CHANNELS: dict[str, tuple[int, int]] = {
    "shell_port": (zmq.ROUTER, zmq.DEALER),
    "iopub_port": (zmq.XPUB, zmq.XSUB),
    "stdin_port": (zmq.ROUTER, zmq.DEALER),
    "control_port": (zmq.ROUTER, zmq.DEALER),
    "hb_port": (zmq.ROUTER, zmq.DEALER),
}
DEFAULT_MAX_MSG_SIZE = 256 * 1024 * 1024
HWM = 1000
HANDSHAKE_IVL_MS = 10_000
PROXY_IDENTITY = b"yg-proxy"
_JOIN_TIMEOUT = 5.0


def curve_available() -> bool:
    """Whether this pyzmq's libzmq can do CurveZMQ (it needs libsodium or tweetnacl)."""
    return bool(zmq.has("curve"))


class CurveProxy:
    """The proxy for one kernel.

    ``backends`` maps connection_info port names (``shell_port`` ... ``hb_port``) to the
    kernel's loopback ports on ``backend_host``. :meth:`start` binds one front socket per
    backend on ``ip`` at a random free port in ``port_range`` (``(0, 0)``: any port; the
    listening socket is bound first and handed to libzmq with ``ZMQ_USE_FD``, so no port is
    ever released and re-bound) and returns ``{name: front port}``. With ``curve`` false (or
    no CURVE in libzmq: a warning) the front sockets use the NULL mechanism and
    :attr:`public_key` is None.
    """

    def __init__(self, backends: dict[str, int], ip: str, port_range: tuple[int, int], *, curve: bool = True,
                 max_msg_size: int = DEFAULT_MAX_MSG_SIZE, backend_host: str = "127.0.0.1",
                 identity: bytes = PROXY_IDENTITY) -> None:
        unknown = set(backends) - set(CHANNELS)
        if unknown or not backends:
            raise ValueError(f"backends must name ports among {', '.join(CHANNELS)}; got {sorted(backends)}")
        if max_msg_size < 1:
            raise ValueError("max_msg_size must be positive")
        self.backends = dict(backends)
        self.ip = ip
        self.port_range = port_range
        self.max_msg_size = max_msg_size
        self.backend_host = backend_host
        self.identity = identity
        self.curve = curve and curve_available()
        if curve and not self.curve:
            log.warning("this pyzmq's libzmq has no CurveZMQ support: the kernel's ports use the NULL mechanism "
                        "(plaintext); install a pyzmq built with libsodium to encrypt them")
        self._public: Optional[bytes] = None
        self._secret: Optional[bytes] = None
        self._ctx: Optional[zmq.Context[Any]] = None
        self._sockets: list[zmq.Socket[Any]] = []
        self._controls: list[zmq.Socket[Any]] = []
        self._threads: list[threading.Thread] = []
        self.ports: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def public_key(self) -> Optional[str]:
        """The proxy's CurveZMQ public key (40 Z85 characters), None without CURVE or before start()."""
        return self._public.decode("ascii") if self._public is not None else None

    # ------------------------------------------------------------------ start

    def start(self) -> dict[str, int]:
        """Bind the front sockets, connect the back ones, start forwarding; return the front ports.
        Raises OSError when the range has too few free ports (nothing is left open then)."""
        with self._lock:
            if self._ctx is not None or self._closed:
                raise RuntimeError("a CurveProxy starts once")
            self._ctx = zmq.Context()
        if self.curve:
            self._public, self._secret = zmq.curve_keypair()
        names = list(self.backends)
        try:
            listeners = lp.bind_sockets_in_range(len(names), self.port_range, self.ip)
            fds = {name: s.detach() for name, s in zip(names, listeners)}
            try:
                for name in names:
                    self._open_channel(name, fds)
            finally:
                for fd in fds.values():  # not adopted by libzmq (an error on the way): ours to close
                    socket.close(fd)
        except BaseException:
            self.close()
            raise
        log.info("CurveZMQ proxy (%s) on %s: %s", "CURVE" if self.curve else "NULL", self.ip,
                 ", ".join(f"{n.removesuffix('_port')} {self.ports[n]}->{self.backends[n]}" for n in names))
        return dict(self.ports)

    def _open_channel(self, name: str, fds: dict[str, int]) -> None:
        assert self._ctx is not None
        front_type, back_type = CHANNELS[name]
        front = self._socket(front_type)
        if self._public is not None and self._secret is not None:
            front.curve_server = True
            front.curve_secretkey = self._secret
            front.curve_publickey = self._public
        front.setsockopt(zmq.MAXMSGSIZE, self.max_msg_size)
        front.setsockopt(zmq.SNDHWM, HWM)
        front.setsockopt(zmq.RCVHWM, HWM)
        front.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        if front_type == zmq.ROUTER:
            front.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a client reconnecting with its identity takes it over
        else:
            front.setsockopt(zmq.XPUB_VERBOSE, 1)
        v6 = ":" in self.ip
        if v6:
            front.setsockopt(zmq.IPV6, 1)
        port = 0
        fd = fds.pop(name)
        try:
            front.setsockopt(zmq.USE_FD, fd)
            host = f"[{self.ip}]" if v6 else self.ip
            port = _port_of_fd(fd)
            front.bind(f"tcp://{host}:{port}")
        except BaseException:
            socket.close(fd)
            raise
        back = self._socket(back_type)
        if back_type == zmq.DEALER:
            back.setsockopt(zmq.IDENTITY, self.identity)
        bhost = f"[{self.backend_host}]" if ":" in self.backend_host else self.backend_host
        if ":" in self.backend_host:
            back.setsockopt(zmq.IPV6, 1)
        back.connect(f"tcp://{bhost}:{self.backends[name]}")
        endpoint = f"inproc://yg-curve-proxy-{id(self):x}-{name}"
        control = self._socket(zmq.PAIR)
        control.bind(endpoint)
        steer = self._socket(zmq.PAIR)
        steer.connect(endpoint)
        self._controls.append(steer)
        self.ports[name] = port
        t = threading.Thread(target=_run_proxy, args=(name, front, back, control),
                             name=f"curve-proxy-{name.removesuffix('_port')}", daemon=True)
        self._threads.append(t)
        t.start()

    def _socket(self, kind: int) -> zmq.Socket[Any]:
        assert self._ctx is not None
        s: zmq.Socket[Any] = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        self._sockets.append(s)
        return s

    # ------------------------------------------------------------------ stop

    def close(self) -> None:
        """Stop forwarding, close every socket and terminate the context. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for steer in self._controls:
            try:
                steer.send(b"TERMINATE", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        for t in self._threads:
            t.join(_JOIN_TIMEOUT)
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:  # cannot happen with libzmq's proxy; never close a socket another thread still uses
            log.error("proxy threads %s did not stop; leaving their sockets to the process exit", stuck)
            return
        for s in self._sockets:
            s.close(linger=0)
        self._sockets.clear()
        self._controls.clear()
        self._secret = None
        if self._ctx is not None:
            self._ctx.term()

    def __enter__(self) -> CurveProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _port_of_fd(fd: int) -> int:
    s = socket.socket(fileno=fd)
    try:
        return int(s.getsockname()[1])
    finally:
        s.detach()


def _run_proxy(name: str, front: zmq.Socket[Any], back: zmq.Socket[Any], control: zmq.Socket[Any]) -> None:
    # Signals (SIGTERM, SIGINT for the launcher) belong to the main thread; here they would only
    # interrupt libzmq's poll.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    while True:
        try:
            zmq.proxy_steerable(front, back, None, control)
            return  # TERMINATE
        except zmq.ContextTerminated:
            return
        except zmq.ZMQError as e:
            if e.errno == errno.EINTR:
                continue
            log.error("proxy for %s stopped: %s", name, e)
            return
