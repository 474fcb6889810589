"""Kernels: list, start, get, delete, interrupt, restart."""

from __future__ import annotations

from ..errors import GatewayError
from .base import APIHandler


class KernelsHandler(APIHandler):
    async def get(self) -> None:
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
        self.finish_json((await self.registry.lookup(kernel_id, self.caller)).model())

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
