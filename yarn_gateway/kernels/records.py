"""Converting between running kernels and session records (see :mod:`.store`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from ..utils import isoformat_z
from .store import make_record

if TYPE_CHECKING:
    from .registry import KernelRecord


def json_safe_connection_info(info: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if not info:
        return None
    out = dict(info)
    key = out.get("key", "")
    out["key"] = key.decode() if isinstance(key, bytes) else str(key)
    return out


async def record_of(rec: KernelRecord, gateway_id: str, launching: bool = False) -> dict[str, Any]:
    """The session record of a kernel (its connection info only once it is connected)."""
    prov = rec.km.provisioner
    info = await prov.get_provisioner_info() if prov is not None else {}
    conn = None if launching else json_safe_connection_info(dict(rec.km.get_connection_info(session=False)))
    return make_record(
        kernel_id=rec.kernel_id,
        name=rec.name,
        owner=rec.owner,
        started_by=rec.started_by,
        env=dict(rec.launch_env),
        gateway_id=gateway_id,
        provisioner=type(prov).__name__ if prov is not None else "",
        provisioner_info=info,
        connection_info=conn,
        state="launching" if launching else "running",
        created=rec.created.timestamp(),
        last_activity=rec.hub.last_activity.timestamp(),
    )


def record_model(record: dict[str, Any]) -> dict[str, Any]:
    """A kernel model for a kernel known only from its record (not attached here)."""
    last = datetime.fromtimestamp(float(record.get("last_activity") or record.get("updated") or 0), timezone.utc)
    return {
        "id": record["kernel_id"],
        "name": record.get("name", ""),
        "last_activity": isoformat_z(last),
        "execution_state": "starting" if record.get("state") == "launching" else "idle",
        "connections": 0,
    }
