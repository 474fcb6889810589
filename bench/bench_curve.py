"""Is a target's kernel connection really CurveZMQ? (issue 17, acceptance 5)

A benchmark of the encrypted path that silently ran on plaintext would measure the wrong
thing, so before its timed rounds every target's kernel is examined from outside:

- its connection file (the kernel's, written by jupyter_client or the gateway) holds a
  ``curve_publickey``;
- a plain ZMQ DEALER (the NULL mechanism) on the kernel's shell port sends a
  ``kernel_info_request`` signed with the kernel's HMAC key, and gets no answer within
  :data:`NULL_WAIT` seconds: the kernel's sockets speak only CurveZMQ;
- the control: the same request from a CurveZMQ DEALER (an ephemeral key pair of its own,
  the kernel's public key as the server key) is answered, so "no answer" above is not a
  dead kernel or a wrong port.

For a NULL target the same probe records ``curve_publickey`` absent and the NULL request
answered. A CurveZMQ target that fails any of the three is an error of that target (its
numbers are not reported).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.session import Session

#: How long a NULL client waits for an answer that must not come (seconds).
NULL_WAIT = 3.0
#: How long the CurveZMQ control (and a NULL kernel's answer) may take (seconds).
ANSWER_WAIT = 15.0


class NotEncrypted(Exception):
    """A CurveZMQ target's kernel connection is not (only) CurveZMQ."""


def _ask(info: dict[str, Any], curve: bool, wait: float) -> bool:
    """Whether a signed kernel_info_request on the shell port is answered within ``wait`` s."""
    key = info["key"]
    session = Session(key=key.encode() if isinstance(key, str) else key,
                      signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.linger = 0
        sock.sndtimeo = 3000  # a DEALER may block sending while no handshake has completed
        if curve:
            public, secret = zmq.curve_keypair()
            sock.curve_publickey, sock.curve_secretkey = public, secret
            server = info["curve_publickey"]
            sock.curve_serverkey = server.encode() if isinstance(server, str) else server
        sock.connect(f"{info.get('transport', 'tcp')}://{info['ip']}:{info['shell_port']}")
        try:
            session.send(sock, session.msg("kernel_info_request"))
        except zmq.Again:
            return False
        return bool(sock.poll(int(wait * 1000)))
    finally:
        sock.close()
        ctx.term()


def probe(connection_file: str) -> dict[str, Any]:
    """What the kernel of ``connection_file`` answers (blocking; run it in a thread)."""
    info = json.loads(Path(connection_file).read_text())
    has_key = bool(info.get("curve_publickey"))
    out: dict[str, Any] = {"curve_publickey": has_key, "curve_secretkey_in_file": bool(info.get("curve_secretkey"))}
    if has_key:
        out["null_answered"] = _ask(info, curve=False, wait=NULL_WAIT)
        out["curve_answered"] = _ask(info, curve=True, wait=ANSWER_WAIT)
        out["encrypted"] = out["curve_answered"] and not out["null_answered"]
    else:
        out["null_answered"] = _ask(info, curve=False, wait=ANSWER_WAIT)
        out["encrypted"] = False
    return out


async def check(connection_file: str, must_be_encrypted: bool, label: str) -> dict[str, Any]:
    """Probe the kernel; raise :class:`NotEncrypted` if it must be CurveZMQ and is not."""
    out = await asyncio.to_thread(probe, connection_file)
    if must_be_encrypted and not out["encrypted"]:
        if not out["curve_publickey"]:
            why = f"its connection file {connection_file} has no curve_publickey"
        elif out["null_answered"]:
            why = "a NULL (plaintext) client holding only the HMAC key got an answer on its shell port"
        else:
            why = "a CurveZMQ client with its public key got no answer either (a dead kernel?)"
        raise NotEncrypted(f"{label}: the kernel connection is not CurveZMQ: {why}")
    return out
