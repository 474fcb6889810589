"""Converting between running kernels and session records (see :mod:`.store`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional, cast

from ..auth.base import is_valid_user_name
from ..errors import GatewayError
from ..provisioners.host import kernel_curve_public_key
from ..utils import isoformat_z
from .env import validate_request_env
from .session_record import Checkpoint, SessionRecord, new_record

if TYPE_CHECKING:
    from ..auth.base import User
    from .host import KernelHost
    from .kernel_record import KernelRecord


def json_safe_connection_info(info: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not info:
        return None
    out = dict(info)
    key = out.get("key", "")
    out["key"] = key.decode() if isinstance(key, bytes) else str(key)
    return out


def kernel_connection_info(km: Any) -> dict[str, Any]:
    """What the relay and a session record need to reach a kernel: jupyter_client's connection
    info plus the kernel's CurveZMQ public key when its provisioner holds one. (jupyter_client
    keeps CurveZMQ keys only as a pair with the secret key; a YARN kernel's secret key never
    leaves its container, so its provisioner keeps the public key.)"""
    info = dict(km.get_connection_info(session=False))
    public = kernel_curve_public_key(km)
    if public and not info.get("curve_publickey"):
        info["curve_publickey"] = public
    return info


async def record_of(rec: KernelRecord, gateway_id: str, launching: bool = False) -> SessionRecord:
    """The session record of a kernel (its connection info only once it is connected)."""
    prov = rec.km.provisioner
    info: Any = await prov.get_provisioner_info() if prov is not None else {}
    conn = None if launching else json_safe_connection_info(kernel_connection_info(rec.km))
    return new_record(
        kernel_id=rec.kernel_id,
        name=rec.name,
        owner=rec.owner,
        started_by=rec.started_by,
        env=dict(rec.launch_env),
        gateway_id=gateway_id,
        provisioner=type(prov).__name__ if prov is not None else "",
        provisioner_info=cast(Checkpoint, info),
        connection_info=conn,
        state="launching" if launching else "running",
        created=rec.created.timestamp(),
        last_activity=rec.hub.last_activity.timestamp(),
    )


def record_model(record: SessionRecord) -> dict[str, Any]:
    """A kernel model for a kernel known only from its record (not attached here)."""
    last = datetime.fromtimestamp(record["last_activity"] or record["updated"], timezone.utc)
    return {
        "id": record["kernel_id"],
        "name": record["name"],
        "last_activity": isoformat_z(last),
        "execution_state": "starting" if record["state"] == "launching" else "idle",
        "connections": 0,
    }


def kernel_detail(rec: KernelRecord) -> dict[str, Any]:
    """The kernel model plus what only admins see: owner, who started it, YARN application."""
    return {**rec.model(), "owner": rec.owner, "started_by": rec.started_by,
            "app_id": getattr(rec.km.provisioner, "app_id", None), "created": isoformat_z(rec.created)}


def record_detail(record: SessionRecord) -> dict[str, Any]:
    """Like :func:`kernel_detail`, for a kernel known only from its session record."""
    return {**record_model(record), "owner": record["owner"], "started_by": record["started_by"],
            "app_id": record["provisioner_info"].get("app_id"),
            "created": isoformat_z(datetime.fromtimestamp(record["created"], timezone.utc))}


async def detail_models(registry: KernelHost, caller: User) -> list[dict[str, Any]]:
    """Detailed models of every kernel ``caller`` may see (as ``KernelRegistry.list_models``)."""
    models = [kernel_detail(r) for r in registry.held(caller)]
    held = {m["id"] for m in models}
    for record in await registry.sessions.records():
        if record["kernel_id"] not in held and registry.policy.can_access(caller, record["owner"]):
            models.append(record_detail(record))
    return models


def identity_problem(record: SessionRecord) -> Optional[str]:
    """Why a (MAC-verified) record's identity fields cannot be trusted, or None: the owner and
    the user who started it must be user names, the kernelspec a name."""
    owner, started_by, name = record["owner"], record["started_by"], record["name"]
    if not isinstance(owner, str) or not is_valid_user_name(owner):
        return f"its owner {str(owner)[:80]!r} is not a valid user name"
    if not isinstance(started_by, str) or not is_valid_user_name(started_by):
        return f"its started_by {str(started_by)[:80]!r} is not a valid user name"
    if not isinstance(name, str) or not name or len(name) > 256:
        return "it names no kernelspec"
    return None


def recovery_env(record: SessionRecord, allowed_envs: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """The environment a recorded kernel is restarted with, filtered as a start request's
    (:func:`~.env.validate_request_env`), and the names dropped from it.

    Raises ValueError (saying why) when it cannot be trusted: a name or value a start request
    could not have, KERNEL_USERNAME (the restart's ``--proxy-user``) other than the owner,
    KERNEL_ID other than the kernel's."""
    raw = record["env"]
    try:
        env = validate_request_env(raw, allowed_envs)
    except GatewayError as exc:
        raise ValueError(f"its restart environment is invalid ({exc.message})") from None
    dropped = sorted(str(k)[:80] for k in raw if k not in env)
    owner = record["owner"]
    if env.get("KERNEL_USERNAME") != owner:
        raise ValueError(f"its restart environment's KERNEL_USERNAME {env.get('KERNEL_USERNAME', '')[:80]!r} is not "
                         f"its owner {owner!r}")
    if env.get("KERNEL_ID", record["kernel_id"]) != record["kernel_id"]:
        raise ValueError("its restart environment's KERNEL_ID is another kernel's")
    return env, dropped


def connection_problem(conn: Any) -> Optional[str]:
    """Why a record's connection info is unusable, or None (also for None: a launch record)."""
    if conn is None:
        return None
    if not isinstance(conn, dict):
        return "its connection info is not an object"
    if not isinstance(conn.get("ip"), str) or not isinstance(conn.get("key", ""), str):
        return "its connection info has no address or key"
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        port = conn.get(name)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            return f"its connection info's {name} is not a port"
    return None
