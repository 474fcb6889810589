"""Protocol-v2 helper for the R kernel launcher (launch_IRkernel.R).

R cannot do RSA-OAEP or AES-GCM with the distribution's packages, and IRkernel cannot be a
CurveZMQ server, so the R launcher runs this script with the container's Python (the one with
pycryptodome and pyzmq) and ``launcher_protocol.py`` and ``curve_proxy.py`` next to it.
Contract with R:

* argv: ``--kernel-id --response-address --public-key --port-range --r-pid
  --transport-encryption curve|none --proxy-ip`` (nothing secret: argv is visible to every
  user);
* stdin: ONE line of JSON, ``{"launch_token": ..., "connection_info": {...}}``, written by R
  after IRkernel has bound its five ZMQ ports itself (so no port is ever released and
  re-bound). The secrets travel only through this private pipe;
* ``none``: IRkernel's ports are in the range on the reachable address and are reported as
  they are (version 1 behaviour). ``curve``: IRkernel's ports are on 127.0.0.1 (any free
  port); this helper starts a :class:`curve_proxy.CurveProxy` with five CurveZMQ server
  sockets in the range on ``--proxy-ip`` in front of them and reports the proxy's ports and
  public key (``curve_publickey``; the secret key stays in this process's memory). Without
  CURVE in this pyzmq the proxy runs with the NULL mechanism and no key is reported;
* this helper then binds the control port inside the range (and keeps it), sends the
  encrypted response to the gateway and serves the control port for R's process;
* it exits (closing the proxy) when stdin reaches EOF (R is gone) or R's pid disappears. If
  the response cannot be delivered, it terminates R so the YARN application fails at once.

Control requests: ``signal`` -> ``os.kill(r_pid, signum)``; ``shutdown`` -> interrupt
R, then ask IRkernel to shut down through its own control channel (a signed Jupyter
``shutdown_request`` sent to its loopback port, not through the proxy: IRkernel then quits
with status 0, so YARN says FINISHED); if R is still alive after a grace period it gets
SIGTERM. Keys and tokens are never logged.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from typing import Any, Optional

try:  # installed as the package yarn_gateway_launchers
    from . import launcher_protocol as lp
except ImportError:  # shipped as plain files into the container
    import launcher_protocol as lp  # type: ignore[no-redef]

log = logging.getLogger("yarn_gateway.r_helper")

SHUTDOWN_GRACE = 8.0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Protocol-v2 helper of the R kernel launcher.")
    p.add_argument("--kernel-id", required=True)
    p.add_argument("--response-address", required=True)
    p.add_argument("--public-key", required=True)
    p.add_argument("--port-range", default="0..0")
    p.add_argument("--r-pid", type=int, required=True)
    p.add_argument("--launch-timeout", type=float, default=120.0)
    p.add_argument("--transport-encryption", choices=lp.TRANSPORT_ENCRYPTION, default="curve",
                   help="curve: R's kernel listens on 127.0.0.1 and this helper runs the CurveZMQ proxy in front")
    p.add_argument("--proxy-ip", default="", help="the address the proxy binds and reports (curve only)")
    args = p.parse_args(argv)
    if args.transport_encryption == "curve" and not args.proxy_ip:
        p.error("--proxy-ip is required with --transport-encryption curve")
    return args


def read_handoff(stream: Any) -> tuple[str, dict[str, Any]]:
    """Parse R's one line: (launch token, connection info). Raises ValueError."""
    line = stream.readline()
    if not line:
        raise ValueError("R closed the pipe before sending the connection info")
    obj = json.loads(line)
    token, info = obj.get("launch_token"), obj.get("connection_info")
    if not isinstance(token, str) or not token or not isinstance(info, dict):
        raise ValueError("hand-off line lacks launch_token or connection_info")
    for field in lp.CONNECTION_INFO_PORTS:
        info[field] = int(info[field])
    return token, info


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kernel_shutdown_request(info: dict[str, Any], timeout: float = 2.0) -> bool:
    """Send a signed Jupyter ``shutdown_request`` to the kernel's control channel.
    Returns False when pyzmq is not available or sending failed."""
    try:
        import zmq
    except ImportError:
        return False
    key = str(info["key"]).encode("utf-8")
    header = {"msg_id": uuid.uuid4().hex, "msg_type": "shutdown_request", "username": "yarn-gateway",
              "session": uuid.uuid4().hex, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "version": "5.3"}
    parts = [json.dumps(p).encode("utf-8") for p in (header, {}, {}, {"restart": False})]
    sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode("ascii")
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.linger = int(timeout * 1000)
        s.connect(f"tcp://{info['ip']}:{info['control_port']}")
        s.send_multipart([b"<IDS|MSG>", sig, *parts])
        s.close()
        return True
    except zmq.ZMQError as e:
        log.warning("shutdown_request to the kernel failed: %s", e)
        return False
    finally:
        ctx.term()


class RKernel:
    """The R process this helper serves."""

    def __init__(self, pid: int, info: dict[str, Any]) -> None:
        self.pid = pid
        self.info = info
        self._stopping = threading.Lock()

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def shutdown(self) -> None:
        if not self._stopping.acquire(blocking=False):
            return
        log.info("shutdown requested over the control port")
        try:
            os.kill(self.pid, signal.SIGINT)  # a running cell would delay the control message
        except ProcessLookupError:
            return
        time.sleep(0.2)
        kernel_shutdown_request(self.info)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        while time.monotonic() < deadline:
            if not _alive(self.pid):
                return
            time.sleep(0.1)
        log.warning("R did not quit within %.0f s; sending SIGTERM", SHUTDOWN_GRACE)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _watch_parent(pid: int, done: threading.Event) -> None:
    while not done.is_set():
        if not _alive(pid):
            done.set()
            return
        done.wait(1.0)


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="[%(levelname)s %(asctime)s %(name)s] %(message)s")
    args = parse_args(argv)
    try:
        token, info = read_handoff(sys.stdin)
    except (ValueError, KeyError, TypeError) as e:
        log.error("kernel %s: bad hand-off from R: %s", args.kernel_id, type(e).__name__ + ": " + str(e))
        return 2
    public_key = lp.load_public_key(args.public_key)
    port_range = lp.parse_port_range(args.port_range)
    proxy: Any = None
    reported = info
    if args.transport_encryption == "curve":
        proxy = _curve_proxy().CurveProxy({p: info[p] for p in lp.CONNECTION_INFO_PORTS}, args.proxy_ip, port_range)
        try:
            reported = {**info, "ip": args.proxy_ip, **proxy.start()}
        except OSError as e:
            log.error("kernel %s: could not bind the CurveZMQ proxy: %s", args.kernel_id, e)
            _terminate_parent(args.r_pid)
            return 1
        if proxy.public_key is not None:
            reported[lp.CURVE_PUBLIC_FIELD] = proxy.public_key
    try:
        return _serve(args, token, info, reported, public_key, port_range)
    finally:
        if proxy is not None:
            proxy.close()


def _curve_proxy() -> Any:
    """The curve_proxy module, imported only with ``curve`` (it needs pyzmq; R checked that it imports)."""
    try:  # installed as the package yarn_gateway_launchers
        from . import curve_proxy
    except ImportError:  # shipped as plain files into the container
        import curve_proxy  # type: ignore[no-redef]
    return curve_proxy


def _terminate_parent(r_pid: int) -> None:
    if os.getppid() == r_pid:  # R is still our parent: its pid has not been reused
        try:
            os.kill(r_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _serve(args: argparse.Namespace, token: str, info: dict[str, Any], reported: dict[str, Any], public_key: Any,
           port_range: tuple[int, int]) -> int:
    """Bind and serve the control port, report ``reported`` to the gateway, wait for R to go.
    ``info`` is where the kernel itself listens (its loopback ports with the proxy)."""
    control_sock = lp.bind_sockets_in_range(1, port_range, str(reported["ip"]))[0]
    kernel = RKernel(args.r_pid, info)
    control = lp.ControlServer(control_sock, lp.ControlVerifier(args.kernel_id, str(info["key"])),
                               kernel.signal, lambda: threading.Thread(target=kernel.shutdown, daemon=True).start())
    control.start()
    log.info("kernel %s: R pid %d, control port %d on %s", args.kernel_id, args.r_pid, control.port, reported["ip"])
    plaintext = lp.build_response_plaintext(token, reported, control.port, args.r_pid, socket.getfqdn())
    frame = lp.encrypt_response(args.kernel_id, plaintext, public_key)
    try:
        lp.send_response(args.response_address, frame, timeout=args.launch_timeout)
    except (lp.ResponseRejected, TimeoutError, ValueError) as e:
        log.error("kernel %s: could not report to the gateway: %s", args.kernel_id, e)
        control.stop()
        _terminate_parent(args.r_pid)
        return 1
    log.info("kernel %s: connection info delivered to %s", args.kernel_id, args.response_address)

    done = threading.Event()
    threading.Thread(target=_watch_parent, args=(args.r_pid, done), daemon=True).start()

    def wait_eof() -> None:
        while sys.stdin.readline():
            pass
        done.set()

    threading.Thread(target=wait_eof, daemon=True).start()
    done.wait()
    control.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
