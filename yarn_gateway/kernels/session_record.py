"""The session record: what a store keeps of a kernel so that a gateway can re-attach it.

:class:`SessionRecord` is the record's one typed form. A record read back from a store
goes through :func:`parse_record` after its MAC verified (:mod:`.record_mac`): it checks
every field's type and fills the optional ones, so the rest of the gateway reads
``record["provisioner_info"]`` and never a ``.get(...) or {}`` of something unchecked.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal, Optional, TypedDict, cast

RECORD_VERSION = 1

State = Literal["launching", "running"]


class Checkpoint(TypedDict, total=False):
    """A provisioner's checkpoint as stored (``get_provisioner_info``): jupyter_client's
    ``kernel_id`` and, for YARN kernels, where the kernel runs. Other provisioners may add keys."""

    kernel_id: str
    app_id: Optional[str]
    owner: str
    control_host: str
    control_port: int


class SessionRecord(TypedDict):
    """A kernel that can outlive the gateway. Records hold secrets (the connection key)."""

    version: int
    kernel_id: str
    #: The user the kernel runs as (its ``--proxy-user``) and the one who started it (an admin may start for others).
    owner: str
    started_by: str
    #: The kernelspec's name.
    name: str
    #: The environment it restarts with (validated again as a start request's before use).
    env: dict[str, Any]
    #: The gateway cluster that keeps it (``YarnServices.gateway_id``); others leave it alone.
    gateway_id: str
    provisioner: str
    provisioner_info: Checkpoint
    #: None while it launches; then the kernel's connection info (with its HMAC key).
    connection_info: Optional[dict[str, Any]]
    state: State
    #: Epoch seconds.
    created: float
    updated: float
    last_activity: Optional[float]


def new_record(*, kernel_id: str, owner: str, name: str = "", started_by: str = "",
               env: Optional[dict[str, Any]] = None, gateway_id: str = "default", provisioner: str = "",
               provisioner_info: Optional[Checkpoint] = None, connection_info: Optional[dict[str, Any]] = None,
               state: State = "running", created: Optional[float] = None,
               last_activity: Optional[float] = None) -> SessionRecord:
    """A record to store now (``updated`` is now; ``created`` too unless given)."""
    if not kernel_id:
        raise ValueError("a session record needs a kernel_id")
    now = time.time()
    return SessionRecord(
        version=RECORD_VERSION, kernel_id=kernel_id, owner=owner, started_by=started_by or owner, name=name,
        env=dict(env or {}), gateway_id=gateway_id, provisioner=provisioner,
        provisioner_info=provisioner_info if provisioner_info is not None else Checkpoint(),
        connection_info=connection_info, state=state, created=now if created is None else created, updated=now,
        last_activity=last_activity)


_NUMBER = (int, float)
#: Optional fields: their types, and the value a record without them gets.
_OPTIONAL: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), ""), "gateway_id": ((str,), "default"), "provisioner": ((str,), ""),
    "env": ((dict,), None), "provisioner_info": ((dict, type(None)), None),
    "connection_info": ((dict, type(None)), None),
    "state": ((str,), "running"), "created": (_NUMBER, 0.0), "updated": (_NUMBER, 0.0),
    "last_activity": ((*_NUMBER, type(None)), None),
}
_CHECKPOINT: dict[str, tuple[type, ...]] = {
    "kernel_id": (str,), "app_id": (str, type(None)), "owner": (str,), "control_host": (str,), "control_port": (int,),
}


class RecordMalformed(ValueError):
    """A (MAC-verified) stored object is not a well-formed session record; the message says why."""


def _type_problem(where: str, name: str, value: Any, types: tuple[type, ...]) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, types):
        return f"its {where}{name!r} is a {type(value).__name__}"
    return None


def record_problem(raw: Any) -> Optional[str]:
    """Why ``raw`` is not a well-formed session record, or None."""
    if not isinstance(raw, Mapping) or raw.get("version") != RECORD_VERSION:
        version = raw.get("version") if isinstance(raw, Mapping) else None
        return f"record version {str(version)[:20]!r} is not {RECORD_VERSION}"
    if not isinstance(raw.get("kernel_id"), str) or not isinstance(raw.get("owner"), str):
        return "it has no kernel_id or owner"
    if "started_by" in raw and (problem := _type_problem("", "started_by", raw["started_by"], (str,))):
        return problem
    for name, (types, _default) in _OPTIONAL.items():
        if name in raw and (problem := _type_problem("", name, raw[name], types)):
            return problem
    if raw.get("state", "running") not in ("launching", "running"):
        return f"its state {str(raw['state'])[:20]!r} is neither 'launching' nor 'running'"
    checkpoint = raw.get("provisioner_info") or {}
    for name, types in _CHECKPOINT.items():
        if name in checkpoint and (problem := _type_problem("provisioner_info ", name, checkpoint[name], types)):
            return problem
    return None


def parse_record(raw: Any) -> SessionRecord:
    """The typed record of a stored object (its optional fields filled); :class:`RecordMalformed` if it is none."""
    problem = record_problem(raw)
    if problem is not None:
        raise RecordMalformed(problem)
    rec = {name: raw.get(name, default) for name, (_types, default) in _OPTIONAL.items()}
    rec.update(version=RECORD_VERSION, kernel_id=raw["kernel_id"], owner=raw["owner"],
               started_by=raw.get("started_by", raw["owner"]), env=dict(raw.get("env") or {}),
               provisioner_info=dict(raw.get("provisioner_info") or {}))
    return cast(SessionRecord, rec)
