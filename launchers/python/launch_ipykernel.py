"""Python kernel launcher for YARN cluster mode (launcher protocol, version 2).

Runs inside the AM container's Python with only ipykernel, pycryptodome, pyspark
(optional) and ``launcher_protocol.py`` next to it. Steps:

1. read ``KERNEL_LAUNCH_TOKEN`` and remove it from the environment (so Spark's JVM and
   user subprocesses do not inherit it);
2. bind six listening sockets at random ports in ``--port-range`` (five ZMQ ports and the
   control port) and keep them: the kernel's ZMQ sockets adopt the already-bound file
   descriptors through libzmq's ``ZMQ_USE_FD`` option, so no port is ever released and
   re-bound (connections arriving early wait in the listen backlog);
3. ``eager``: create the SparkSession now;
4. initialize ipykernel in-process on those sockets, start the control server, send
   the encrypted response, then run the kernel (``lazy``: Spark starts in a background
   thread and ``spark``/``sc`` are proxies until it is up).

``--transport-encryption curve`` (the default): the launcher makes the kernel's CurveZMQ key
pair (libzmq's generator, in memory only) and every kernel socket is a CurveZMQ server before it
is bound, so from the network the ports answer only CurveZMQ; the response carries the public
key. ipykernel 6 needs no support of its own for this: CurveZMQ is a libzmq socket option. A
libzmq without CURVE falls back to plain ZMQ with a warning (the gateway may refuse it).

The kernel key and the launch token are never logged nor written to disk (no connection
file is written).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from typing import Any, Optional

import zmq
from ipykernel.heartbeat import Heartbeat
from ipykernel.iostream import IOPubThread
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets.config import Config

try:  # installed as the package yarn_gateway_launchers
    from . import launcher_protocol as lp
except ImportError:  # shipped as plain files into the container
    import launcher_protocol as lp  # type: ignore[no-redef]

log = logging.getLogger("yarn_gateway.launcher")

ZMQ_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
SPARK_MODES = ("lazy", "eager", "none")

# Set while the kernel answers complete/inspect requests: the lazy Spark proxies then
# never wait for the session (IPython's completer and jedi call dir()/getattr on them).
_no_wait = threading.local()


def _waiting_forbidden() -> bool:
    return getattr(_no_wait, "depth", 0) > 0


# --------------------------------------------------------------------------- Spark


class SparkHolder:
    """Owns the SparkSession (if any) for ``--spark-context-initialization-mode``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ready = threading.Event()
        self.session: Any = None
        self.sc: Any = None
        self.error: Optional[str] = None
        self.starting = False  # a background start was begun (lazy mode)

    def create(self) -> None:
        """Create the session in the calling thread; never raises (error kept)."""
        try:
            from pyspark.sql import SparkSession

            session = SparkSession.builder.getOrCreate()
            self.session, self.sc = session, session.sparkContext
            # Scala's SparkContext has deployMode; PySpark's has not: the same cell works in both.
            if not hasattr(self.sc, "deployMode"):
                self.sc.deployMode = self.sc.getConf().get("spark.submit.deployMode", "client")
            log.info("Spark session ready (application %s)", self.sc.applicationId)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            log.error("Spark session failed to start: %s", self.error)
        finally:
            self.ready.set()

    def start_background(self, user_ns: dict[str, Any]) -> None:
        """Start the session in a thread; swap the proxies in ``user_ns`` for the real
        objects once it is up (unless the user rebound the names)."""
        proxies = {"spark": LazySpark(self, "session", "spark"), "sc": LazySpark(self, "sc", "sc")}
        user_ns.update(proxies)
        self.starting = True

        def run() -> None:
            self.create()
            if self.error is None:
                for name, real in (("spark", self.session), ("sc", self.sc)):
                    if user_ns.get(name) is proxies[name]:
                        user_ns[name] = real

        threading.Thread(target=run, name="spark-init", daemon=True).start()

    def wait(self, attr: str) -> Any:
        self.ready.wait()  # interruptible by SIGINT in the main thread
        if self.error is not None:
            raise RuntimeError(f"the Spark session failed to start: {self.error}")
        return getattr(self, attr)

    def cancel_all_jobs(self) -> None:
        if self.sc is not None:
            try:
                self.sc.cancelAllJobs()
            except Exception as e:
                log.warning("cancelAllJobs failed: %s", type(e).__name__)

    def stop(self, timeout: float = 30.0, start_wait: float = 90.0) -> None:
        """Stop the session; one still starting in the background is waited for (up to ``start_wait``).

        In YARN cluster mode a driver that exits before its SparkContext registered with the
        ResourceManager ends FAILED ("did not initialize spark context"), so a kernel shut down
        right after it started would leave a failed application in YARN's history.
        """
        if self.starting and not self.ready.is_set():
            log.info("waiting for the Spark session that is still starting, to stop it cleanly")
            self.ready.wait(start_wait)
        if self.session is None:
            return
        t = threading.Thread(target=self.session.stop, name="spark-stop", daemon=True)
        t.start()
        t.join(timeout)


class LazySpark:
    """Stands for ``spark``/``sc`` until the session is up. Using an attribute waits for
    the session; ``repr``, ``dir``, display probes and anything done while completing
    or inspecting never wait."""

    __slots__ = ("_attr", "_holder", "_name")

    def __init__(self, holder: SparkHolder, attr: str, name: str) -> None:
        object.__setattr__(self, "_holder", holder)
        object.__setattr__(self, "_attr", attr)
        object.__setattr__(self, "_name", name)

    def _current(self) -> Any:
        holder: SparkHolder = object.__getattribute__(self, "_holder")
        return getattr(holder, object.__getattribute__(self, "_attr")) if holder.ready.is_set() else None

    def __getattr__(self, name: str) -> Any:
        probe = name.startswith(("__", "_repr_", "_ipython_")) or _waiting_forbidden()
        if probe:
            target = self._current()
            if target is None:
                raise AttributeError(name)
            return getattr(target, name)
        holder: SparkHolder = object.__getattribute__(self, "_holder")
        return getattr(holder.wait(object.__getattribute__(self, "_attr")), name)

    def __dir__(self) -> list[str]:
        target = self._current()
        return dir(target) if target is not None else []

    def __repr__(self) -> str:
        target = self._current()
        if target is not None:
            return repr(target)
        return f"<{object.__getattribute__(self, '_name')}: Spark session starting in the background>"


# --------------------------------------------------------------------------- kernel


class LauncherKernel(IPythonKernel):
    """IPythonKernel whose completion and inspection never wait for a lazy Spark session."""

    def do_complete(self, code: str, cursor_pos: Optional[int]) -> Any:
        _no_wait.depth = getattr(_no_wait, "depth", 0) + 1
        try:
            return super().do_complete(code, cursor_pos)
        finally:
            _no_wait.depth -= 1

    def do_inspect(self, code: str, cursor_pos: Optional[int], detail_level: int = 0,
                   omit_sections: Any = ()) -> Any:
        _no_wait.depth = getattr(_no_wait, "depth", 0) + 1
        try:
            return super().do_inspect(code, cursor_pos, detail_level, omit_sections)
        finally:
            _no_wait.depth -= 1


#: The kernel's CurveZMQ key pair (public, secret), Z85; None: plain ZMQ. Set before initialize().
_curve_pair: Optional[tuple[bytes, bytes]] = None


def make_curve_pair(mode: str) -> Optional[tuple[bytes, bytes]]:
    """The kernel's CurveZMQ key pair for ``--transport-encryption`` ``mode``, or None."""
    if mode != "curve":
        return None
    if not zmq.has("curve"):
        log.warning("this container's libzmq has no CURVE support: the kernel's ports will not be encrypted")
        return None
    return zmq.curve_keypair()


def _as_curve_server(s: zmq.Socket[Any]) -> None:
    """Make ``s`` a CurveZMQ server (before it is bound) when the kernel encrypts."""
    if _curve_pair is not None:
        s.curve_publickey, s.curve_secretkey = _curve_pair
        s.curve_server = True


class _PreboundHeartbeat(Heartbeat):
    def __init__(self, context: zmq.Context[Any], addr: tuple[str, str, int], fd: int) -> None:
        self._fd = fd
        super().__init__(context, addr)

    def _try_bind_socket(self) -> Any:
        self.socket.setsockopt(zmq.USE_FD, self._fd)
        _as_curve_server(self.socket)
        return super()._try_bind_socket()


class LauncherKernelApp(IPKernelApp):
    """IPKernelApp on pre-bound sockets, without a connection file (it would hold the key)
    and without IOPub's loopback pipe listener (a port outside the range)."""

    prebound_fds: dict[int, int] = {}  # port -> listening fd, set before initialize()

    def _try_bind_socket(self, s: zmq.Socket[Any], port: int) -> int:
        fd = self.prebound_fds.pop(port, None)
        if fd is None:
            raise RuntimeError(f"port {port} was not pre-bound by the launcher")
        s.setsockopt(zmq.USE_FD, fd)
        _as_curve_server(s)
        s.bind(f"tcp://{self.ip}:{port}")
        return port

    def init_control(self, context: zmq.Context[Any]) -> None:
        super().init_control(context)
        if _curve_pair is None or self.debug_shell_socket is None:
            return
        # ipykernel's in-process client of its own shell port (the debugger's) must speak CurveZMQ too.
        endpoint = self.shell_socket.getsockopt(zmq.LAST_ENDPOINT)
        self.debug_shell_socket.close(linger=0)
        self.debug_shell_socket = context.socket(zmq.DEALER)
        self.debug_shell_socket.linger = 1000
        public, secret = zmq.curve_keypair()
        self.debug_shell_socket.curve_serverkey = _curve_pair[0]
        self.debug_shell_socket.curve_publickey, self.debug_shell_socket.curve_secretkey = public, secret
        if endpoint:
            self.debug_shell_socket.connect(endpoint)

    def init_heartbeat(self) -> None:
        fd = self.prebound_fds.pop(self.hb_port)
        self.heartbeat = _PreboundHeartbeat(zmq.Context(), (self.transport, self.ip, self.hb_port), fd)
        self.heartbeat.start()

    def init_iopub(self, context: zmq.Context[Any]) -> None:
        self.iopub_socket = context.socket(zmq.PUB)
        self.iopub_socket.linger = 1000
        self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)
        self.configure_tornado_logger()
        # pipe=False: no 127.0.0.1 listener for output of forked children.
        self.iopub_thread = IOPubThread(self.iopub_socket, pipe=False)
        self.iopub_thread.start()
        self.iopub_socket = self.iopub_thread.background_socket

    def init_connection_file(self) -> None:
        pass

    def write_connection_file(self, **kwargs: Any) -> None:
        pass

    def log_connection_info(self) -> None:
        log.info("kernel listening on %s (shell %d, iopub %d, stdin %d, control %d, hb %d)", self.ip,
                 self.shell_port, self.iopub_port, self.stdin_port, self.control_port, self.hb_port)


# --------------------------------------------------------------------------- launcher


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Start an IPython kernel and report back to yarn-gateway.")
    p.add_argument("--kernel-id", required=True)
    p.add_argument("--response-address", required=True)
    p.add_argument("--public-key", required=True)
    p.add_argument("--port-range", default="0..0")
    p.add_argument("--spark-context-initialization-mode", choices=SPARK_MODES, default="none")
    p.add_argument("--transport-encryption", choices=lp.TRANSPORT_ENCRYPTION, default="curve")
    return p.parse_args(argv)


def reachable_ip(response_host: str, response_port: int) -> str:
    """The local address the kernel advertises: the one this host uses to reach the
    gateway (a UDP connect sends nothing; it only asks the routing table)."""
    try:
        family = socket.AF_INET6 if ":" in response_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((response_host, response_port))
            ip = str(s.getsockname()[0])
        if ip not in ("0.0.0.0", "::"):
            return ip
    except OSError:
        pass
    return socket.gethostbyname(socket.gethostname())


def _launch_timeout() -> float:
    try:
        return max(5.0, float(os.environ.get("KERNEL_LAUNCH_TIMEOUT", "120")))
    except ValueError:
        return 120.0


def _log_stream() -> Any:
    """The container's stderr, kept apart from the kernel's output.

    ipykernel captures file descriptors 1 and 2 into the running cell's output
    (``capture_fd_output``), so anything the launcher logged through fd 2 after the kernel
    started (the "Spark session ready" line, during the first Spark cell) would show up in
    the notebook. A duplicate taken before the kernel starts still goes to the container log.
    """
    try:
        return os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    except OSError:
        return sys.__stderr__


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(stream=_log_stream(), level=logging.INFO,
                        format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    args = parse_args(argv)
    token = os.environ.pop("KERNEL_LAUNCH_TOKEN", "")
    if not token:
        log.error("KERNEL_LAUNCH_TOKEN is not set; the gateway must provide it")
        return 2
    public_key = lp.load_public_key(args.public_key)
    resp_host, resp_port = lp.split_address(args.response_address)
    ip = reachable_ip(resp_host, resp_port)
    socks = lp.bind_sockets_in_range(len(ZMQ_PORTS) + 1, lp.parse_port_range(args.port_range), ip)
    ports = {name: int(s.getsockname()[1]) for name, s in zip(ZMQ_PORTS, socks)}
    control_sock = socks[-1]
    key = secrets.token_hex(32)
    log.info("kernel %s: ports %s, control %d on %s", args.kernel_id, ports,
             control_sock.getsockname()[1], ip)

    spark = SparkHolder(args.spark_context_initialization_mode)
    if spark.mode == "eager":
        spark.create()
        if spark.error is not None:
            return 1

    cfg = Config()
    cfg.IPKernelApp.ip = ip
    cfg.IPKernelApp.transport = "tcp"
    for name, port in ports.items():
        setattr(cfg.IPKernelApp, name, port)
    cfg.IPKernelApp.kernel_class = LauncherKernel
    cfg.IPKernelApp.parent_handle = 0
    cfg.Session.key = key.encode("ascii")
    cfg.Session.signature_scheme = "hmac-sha256"
    LauncherKernelApp.prebound_fds = {p: s.detach() for p, s in zip(ports.values(), socks)}
    global _curve_pair
    _curve_pair = make_curve_pair(args.transport_encryption)
    app = LauncherKernelApp.instance(config=cfg)
    app.initialize([])
    if app.shell is not None and spark.mode == "eager":
        app.shell.user_ns.update(spark=spark.session, sc=spark.sc)

    main_pid = os.getpid()
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def on_signal(signum: int) -> None:
        if signum == signal.SIGINT:
            # To the main thread itself: a process-directed signal may land on any thread,
            # and then a main thread blocked in sleep() or a socket read is not woken.
            # Signal first so the cell sees KeyboardInterrupt at once; cancelling jobs is
            # a JVM round trip and may take a moment.
            signal.pthread_kill(main_thread, signum)
            threading.Thread(target=spark.cancel_all_jobs, name="spark-cancel", daemon=True).start()
        else:
            os.kill(main_pid, signum)

    def on_shutdown() -> None:
        log.info("kernel %s: shutdown requested over the control port", args.kernel_id)
        _exit_cleanly(spark, 0)

    control = lp.ControlServer(control_sock, lp.ControlVerifier(args.kernel_id, key), on_signal, on_shutdown)
    control.start()

    conn_info = {"ip": ip, "transport": "tcp", "signature_scheme": "hmac-sha256", "key": key,
                 **ports, "kernel_name": os.environ.get("KERNEL_SPEC_NAME", "python3")}
    if _curve_pair is not None:
        conn_info[lp.CURVE_PUBLIC_FIELD] = _curve_pair[0].decode("ascii")
    log.info("kernel %s: transport encryption %s", args.kernel_id, "CurveZMQ" if _curve_pair else "none")
    plaintext = lp.build_response_plaintext(token, conn_info, control.port, main_pid, socket.getfqdn())
    frame = lp.encrypt_response(args.kernel_id, plaintext, public_key)
    try:
        lp.send_response(args.response_address, frame, timeout=_launch_timeout())
    except (lp.ResponseRejected, TimeoutError, ValueError) as e:
        log.error("kernel %s: could not report to the gateway: %s", args.kernel_id, e)
        _exit_cleanly(spark, 1)
    log.info("kernel %s: connection info delivered to %s", args.kernel_id, args.response_address)

    if spark.mode == "lazy" and app.shell is not None:
        spark.start_background(app.shell.user_ns)
    app.start()  # returns after a shutdown_request on the kernel's own channels
    control.stop()
    _exit_cleanly(spark, 0)
    return 0


def _exit_cleanly(spark: SparkHolder, code: int) -> None:
    """Stop Spark, flush, and leave without waiting on kernel or py4j threads."""
    spark.stop()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: S110 - a closed stream must not block exit
            pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
