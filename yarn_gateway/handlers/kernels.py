"""Kernels: list, start, get, delete, interrupt, restart."""

from __future__ import annotations

from ..errors import GatewayError
from ..kernels.records import detail_models, kernel_detail
from .base import APIHandler


def wants_detail(handler: APIHandler) -> bool:
    """Whether the request asks for admin detail (``?detail=1``); 403 for a non-admin who does."""
    if handler.get_query_argument("detail", "") in ("", "0", "false"):
        return False
    if not handler.policy.is_admin(handler.caller):
        raise GatewayError(403, f"User '{handler.caller.name}' may not ask for kernel details (detail=1): "
                           "only admins (AccessPolicy.admin_users) may.", reason="Admins only")
    return True


class KernelsHandler(APIHandler):
    async def get(self) -> None:
        if wants_detail(self):
            self.finish_json(await detail_models(self.registry, self.caller))
            return
        self.finish_json(await self.registry.list_models(self.caller))

    async def post(self) -> None:
        body = self.json_body()
        name = body.get("name") or self.settings["default_kernel_name"]
        if not isinstance(name, str):
            raise GatewayError(400, "'name' must be a kernelspec name (a string).", reason="Bad request")
        rec = await self.registry.start(self.caller, name, body.get("env"))
        self.set_header("Location", f"{self.settings['base_url']}api/kernels/{rec.kernel_id}")
        self.finish_json(rec.model(), status=201)


class KernelHandler(APIHandler):
    async def get(self, kernel_id: str) -> None:
        detail = wants_detail(self)
        rec = await self.registry.lookup(kernel_id, self.caller)
        self.finish_json(kernel_detail(rec) if detail else rec.model())

    async def delete(self, kernel_id: str) -> None:
        rec = await self.registry.lookup(kernel_id, self.caller)
        await self.registry.shutdown(rec)
        self.set_status(204)
        self.finish()


class KernelActionHandler(APIHandler):
    async def post(self, kernel_id: str, action: str) -> None:
        rec = await self.registry.lookup(kernel_id, self.caller)
        if action == "interrupt":
            await self.registry.interrupt(rec)
            self.set_status(204)
            self.finish()
        else:
            await self.registry.restart(rec)
            self.finish_json(rec.model())
