"""One kernel the gateway holds (:class:`KernelRecord`): a leaf module, so that every part of
``kernels/`` can name the record without importing the registry that owns it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from jupyter_client.manager import AsyncKernelManager

from ..relay.hub import KernelHub
from ..utils import isoformat_z


@dataclass
class KernelRecord:
    """One running kernel."""

    kernel_id: str
    name: str
    owner: str
    started_by: str
    km: AsyncKernelManager
    hub: KernelHub
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: bool = False
    released: bool = False  # no longer held here, but possibly still running (in YARN)
    ready: bool = False  # started (or re-attached) and connected; launching kernels are never culled
    launch_env: dict[str, str] = field(default_factory=dict)
    launch_task: Optional[asyncio.Task[None]] = None  # while starting: what a gateway stop cancels
    checkpoint: Optional[asyncio.Future[None]] = None  # the save of the launch record, once there is one

    @property
    def recoverable(self) -> bool:
        """Whether the kernel can outlive this gateway (its provisioner supports recovery)."""
        return bool(getattr(self.km.provisioner, "supports_recovery", False))

    def model(self) -> dict[str, Any]:
        """The kernel model exactly as jupyter_server returns it."""
        return {
            "id": self.kernel_id,
            "name": self.name,
            "last_activity": isoformat_z(self.hub.last_activity),
            "execution_state": self.hub.execution_state,
            "connections": self.hub.connections,
        }
