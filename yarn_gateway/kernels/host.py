"""What the parts of ``kernels/`` (the session keeper, the limits, the models, housekeeping) need
of the registry that owns every kernel: :class:`KernelHost`, which
:class:`~yarn_gateway.kernels.registry.KernelRegistry` is. They are typed against it, so none of
them imports the registry and the registry alone writes kernel state."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .kernel_record import KernelRecord
from .session_record import SessionRecord

if TYPE_CHECKING:
    from ..auth.base import User
    from ..auth.policy import AccessPolicy
    from ..metrics import GatewayMetrics
    from ..provisioners.services import YarnServices


class RecordSource(Protocol):
    """The session store as the registry's users read it."""

    async def records(self) -> list[SessionRecord]: ...


class KernelHost(Protocol):
    """The registry, as seen from the rest of ``kernels/``."""

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter[Any]: ...

    @property
    def kernels(self) -> dict[str, KernelRecord]: ...

    @property
    def policy(self) -> AccessPolicy: ...

    @property
    def metrics(self) -> GatewayMetrics: ...

    @property
    def yarn_services(self) -> YarnServices: ...

    @property
    def allowed_envs(self) -> list[str]: ...

    @property
    def max_launch_timeout(self) -> float: ...

    @property
    def sessions(self) -> RecordSource: ...

    def held(self, caller: User) -> list[KernelRecord]: ...

    def release(self, rec: KernelRecord) -> None: ...

    async def shutdown(self, rec: KernelRecord, now: bool = False) -> None: ...

    async def adopt(self, record: SessionRecord, env: dict[str, str],
                    attach_timeout: float) -> Optional[KernelRecord]: ...
